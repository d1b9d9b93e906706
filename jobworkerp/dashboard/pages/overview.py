"""Overview: per channel, jobs queued (by priority), scheduled and running, the concurrency this
server is configured with, and live charts of jobs finished per second and the failure rate.

The page is rendered once; app.js then polls /api/overview (a shared snapshot, inflight.py) and
draws the charts (rates.py) on canvases. Runner hosts (how many, restarts) are not in the public
API, so the page says so instead of reaching into the process (README: Dashboard).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from jobworkerp.dashboard.http import Request, Response
from jobworkerp.dashboard.inflight import DEFAULT_CHANNEL, UNKNOWN, ChannelCounts
from jobworkerp.dashboard.session import Session
from jobworkerp.dashboard.site import Site

PRIORITIES = ("HIGH", "MEDIUM", "LOW")


def _label(channel: str) -> str:
    return "default" if channel == DEFAULT_CHANNEL else channel


async def channel_rows(site: Site) -> dict[str, Any]:
    snapshot = await site.inflight.snapshot()
    counts = snapshot.per_channel()
    configured = {c.name: c.concurrency for c in site.channels}
    named = {(w.data.channel or DEFAULT_CHANNEL) for w in snapshot.workers.values() if w.data is not None}
    names = sorted(set(configured) | named | set(counts), key=lambda n: (n == UNKNOWN, n != DEFAULT_CHANNEL, n))
    workers_on = Counter((w.data.channel or DEFAULT_CHANNEL) for w in snapshot.workers.values() if w.data is not None)
    rows: list[dict[str, Any]] = []
    for name in names:
        entry = counts.get(name, ChannelCounts())
        rows.append({
            "channel": _label(name),
            "concurrency": configured.get(name),
            "workers": workers_on[name],
            "queued": {p: entry.queued.get(p, 0) for p in PRIORITIES},
            "queued_unknown": entry.queued.get(UNKNOWN, 0),
            "queued_total": entry.queued_total,
            "scheduled": entry.scheduled,
            "running": entry.running,
            "wait_result": entry.wait_result,
        })
    return {"channels": rows, "in_flight": len(snapshot.statuses), "truncated": snapshot.truncated,
            "workers": len(snapshot.workers), "taken_ms": snapshot.taken_ms}


async def overview(site: Site, request: Request, session: Session, match: re.Match[str]) -> Response:
    site.rates.viewed()
    state = await channel_rows(site)
    return site.render("overview.html", request, session, title="Overview", state=state, mode=site.mode)


async def overview_json(site: Site, request: Request, session: Session, match: re.Match[str]) -> Response:
    site.rates.viewed()
    state = await channel_rows(site)
    state["rates"] = site.rates.series()
    return Response(200, json.dumps(state).encode(), "application/json", [("cache-control", "no-store")])


async def logout(site: Site, request: Request, session: Session, match: re.Match[str]) -> Response:
    site.form(request, session)
    return site.logout(request, session)


def register(site: Site) -> None:
    site.route("GET", "/", overview)
    site.route("GET", "/api/overview", overview_json)
    site.route("POST", "/logout", logout)
