"""Runners: each runner with its settings, args and result schemas (the .proto text it publishes)."""

from __future__ import annotations

import re

from jobworkerp.cli.client import present
from jobworkerp.dashboard import queries
from jobworkerp.dashboard.http import Request, Response
from jobworkerp.dashboard.session import Session
from jobworkerp.dashboard.site import Site


async def runners(site: Site, request: Request, session: Session, match: re.Match[str]) -> Response:
    rows = [present.runner(r) for r in await site.api.run(queries.runners)]
    return site.render("runners.html", request, session, title="Runners", runners=rows)


def register(site: Site) -> None:
    site.route("GET", "/runners", runners)
