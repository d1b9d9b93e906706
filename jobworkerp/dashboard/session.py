"""Sessions, the login with AUTH_TOKEN, and the CSRF token of every form.

A session is a random id in an HttpOnly, SameSite=Strict cookie (Secure over TLS) naming an entry
kept in this process's memory: nothing about it can be read or forged by a page. With AUTH_TOKEN
the login page asks for the token once; it is compared in constant time through the gRPC front's
own `TokenCheck` (front/auth.py), so wrong guesses count against the same per-address limit as on
the gRPC port. A successful login gets a new session id (no fixation).

Every state-changing request is a POST that must carry its session's CSRF token (a hidden form
field, compared in constant time), and an `Origin` header, when the browser sends one, must be
this dashboard's own. Without AUTH_TOKEN the dashboard trusts whoever reaches it, as the gRPC port
does, but it still takes only requests whose Host is an IP address or `localhost`: a page on
another site that rebinds its own name to 127.0.0.1 (DNS rebinding) is refused.

Sessions are bounded (MAX_SESSIONS, the least recently used dropped first) and expire after
IDLE_EXPIRY_S without a request. A restart logs everyone out, which is fine for a dashboard.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from jobworkerp.dashboard.http import HttpError, Request
from jobworkerp.front.auth import TokenCheck

COOKIE = "jw_dashboard"
MAX_SESSIONS = 10_000
IDLE_EXPIRY_S = 12 * 3600.0


@dataclass
class Session:
    sid: str
    csrf: str
    authenticated: bool
    last_seen: float
    flashes: list[tuple[str, str]] = field(default_factory=list)  # (kind, message) for the next page

    def flash(self, kind: str, message: str) -> None:
        self.flashes.append((kind, message))

    def take_flashes(self) -> list[tuple[str, str]]:
        taken, self.flashes = self.flashes, []
        return taken


class Sessions:
    def __init__(self, token_check: TokenCheck | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._check = token_check
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    @property
    def needs_login(self) -> bool:
        return self._check is not None

    def get(self, request: Request) -> Session | None:
        sid = request.cookie(COOKIE)
        session = self._sessions.get(sid) if sid else None
        now = self._clock()
        if session is None or now - session.last_seen > IDLE_EXPIRY_S:
            if session is not None:
                del self._sessions[session.sid]
            return None
        session.last_seen = now
        self._sessions.move_to_end(session.sid)
        return session

    def new(self, *, authenticated: bool) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), authenticated, self._clock())
        self._sessions[session.sid] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    def drop(self, session: Session) -> None:
        self._sessions.pop(session.sid, None)

    def login(self, request: Request, presented: str) -> Session | str:
        """A new authenticated session, or why the token was refused."""
        assert self._check is not None
        refusal = self._check.refusal(request.peer, presented)
        if refusal is not None:
            return refusal
        return self.new(authenticated=True)


def cookie_header(session: Session, *, secure: bool) -> tuple[str, str]:
    flags = "; Secure" if secure else ""
    return "set-cookie", f"{COOKIE}={session.sid}; Path=/; HttpOnly; SameSite=Strict{flags}"


def clear_cookie_header(*, secure: bool) -> tuple[str, str]:
    flags = "; Secure" if secure else ""
    return "set-cookie", f"{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{flags}"


def check_csrf(request: Request, session: Session, form: dict[str, list[str]]) -> None:
    """Refuse a POST without its session's token, or sent from a page of another origin."""
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        host = request.headers.get("host", "")
        scheme = "https" if request.secure else "http"
        if origin != f"{scheme}://{host}":
            raise HttpError(403, "this form was sent from another site")
    presented = (form.get("csrf") or [""])[0]
    if not hmac.compare_digest(presented.encode(), session.csrf.encode()):
        raise HttpError(403, "the form's CSRF token is missing or out of date; reload the page and try again")


def host_allowed(request: Request) -> bool:
    """Without a token: only IP-literal or `localhost` Host headers (see the module docstring)."""
    host = request.headers.get("host", "")
    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name.lower() == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
