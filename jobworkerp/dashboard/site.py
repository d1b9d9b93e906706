"""The dashboard's requests: the gate every request passes (host, session, login, CSRF), the
routes, and page rendering. Pages themselves live in `pages/`, one module per section.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import quote

from grpclib.exceptions import GRPCError

from jobworkerp.config import ChannelConfig
from jobworkerp.dashboard.api import Api
from jobworkerp.dashboard.http import HttpError, Request, Response, redirect, text_response
from jobworkerp.dashboard.inflight import InflightJobs
from jobworkerp.dashboard.rates import ResultRates
from jobworkerp.dashboard.render import environment
from jobworkerp.dashboard.session import (
    Session,
    Sessions,
    check_csrf,
    clear_cookie_header,
    cookie_header,
    host_allowed,
)

Page = Callable[["Site", Request, Session, re.Match[str]], Awaitable[Response]]
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    page: Page


class Site:
    def __init__(self, api: Api, sessions: Sessions, channels: tuple[ChannelConfig, ...], mode: str) -> None:
        self.api = api
        self.sessions = sessions
        self.channels = channels  # configured on this server (its WORKER_* settings)
        self.mode = mode
        self.inflight = InflightJobs(api)
        self.rates = ResultRates(api)
        # Templates and static files are read once here, at start-up, never per request.
        self._env = environment()
        self._routes: list[Route] = []
        self._static = {p.name: p.read_bytes() for p in resources.files("jobworkerp.dashboard").joinpath("static")
                        .iterdir() if p.name.endswith(tuple(STATIC_TYPES))}

    def route(self, method: str, pattern: str, page: Page) -> None:
        self._routes.append(Route(method, re.compile(pattern + r"\Z"), page))

    def render(self, template: str, request: Request, session: Session, status: int = 200,
               **context: Any) -> Response:
        body = self._env.get_template(template).render(
            csrf=session.csrf, flashes=session.take_flashes(), login=self.sessions.needs_login,
            path=request.path, **context)
        return Response(status, body.encode())

    def form(self, request: Request, session: Session) -> dict[str, list[str]]:
        form = request.form()
        check_csrf(request, session, form)
        return form

    async def handle(self, request: Request) -> Response:
        if not self.sessions.needs_login and not host_allowed(request):
            return text_response(421, "the dashboard without AUTH_TOKEN answers only to an IP address or "
                                      "localhost in the Host header")
        if request.path.startswith("/static/"):
            return self._static_file(request.path.removeprefix("/static/"))
        session = self.sessions.get(request)
        set_cookie: list[tuple[str, str]] = []
        if session is None:
            session = self.sessions.new(authenticated=not self.sessions.needs_login)
            set_cookie.append(cookie_header(session, secure=request.secure))
        if request.path == "/login":
            response = await self._login(request, session)
        elif not session.authenticated:
            if request.method != "GET" or request.path.startswith("/api/"):
                response = text_response(401, "log in first")
            else:
                response = redirect("/login?next=" + quote(request.path))
        else:
            response = await self._dispatch(request, session)
        response.headers.extend(set_cookie)
        return response

    async def _dispatch(self, request: Request, session: Session) -> Response:
        allowed = []
        for route in self._routes:
            match = route.pattern.match(request.path)
            if match is None:
                continue
            if route.method != request.method:
                allowed.append(route.method)
                continue
            try:
                return await route.page(self, request, session, match)
            except GRPCError as e:
                return self.render("error.html", request, session, 502, title="The API refused",
                                   message=f"{e.status.name}: {e.message}")
            except (OSError, ConnectionError) as e:
                return self.render("error.html", request, session, 502, title="The API cannot be reached",
                                   message=f"{type(e).__name__}: {e}")
        if allowed:
            return Response(405, b"method not allowed", "text/plain; charset=utf-8", [("allow", ", ".join(allowed))])
        return self.render("error.html", request, session, 404, title="Not found",
                           message=f"nothing at {request.path}")

    async def _login(self, request: Request, session: Session) -> Response:
        next_path = request.arg("next", "/")
        if not next_path.startswith("/") or next_path.startswith("//"):
            next_path = "/"  # only a path of this site, never an open redirect
        if not self.sessions.needs_login:
            return redirect(next_path)
        if request.method == "GET":
            return self.render("login.html", request, session, title="Log in", next=next_path, error=None)
        if request.method != "POST":
            raise HttpError(405, "method not allowed")
        form = self.form(request, session)
        outcome = self.sessions.login(request, (form.get("token") or [""])[0])
        if isinstance(outcome, str):
            return self.render("login.html", request, session, 401, title="Log in", next=next_path, error=outcome)
        self.sessions.drop(session)
        return redirect(next_path, [cookie_header(outcome, secure=request.secure)])

    def logout(self, request: Request, session: Session) -> Response:
        self.sessions.drop(session)
        return redirect("/login" if self.sessions.needs_login else "/", [clear_cookie_header(secure=request.secure)])

    def _static_file(self, name: str) -> Response:
        body = self._static.get(name)
        if body is None:
            return text_response(404, "not found")
        kind = STATIC_TYPES[name[name.rindex("."):]]
        return Response(200, body, kind, [("cache-control", "max-age=300")])
