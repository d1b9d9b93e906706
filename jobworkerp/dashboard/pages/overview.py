"""Overview: per channel, jobs queued (by priority), scheduled and running, the concurrency and
runner hosts of the worker processes serving it with the hosts' restarts by cause, and live
charts of jobs finished per second and the failure rate.

The page is rendered once; app.js then polls /api/overview (a shared snapshot, inflight.py, and
ChannelInfoService.FindAll, this server's extension of the API) and draws the charts (rates.py) on
canvases. Against a front without that extension, the concurrency is the one configured here and
runner hosts are left blank.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from jobworkerp.dashboard import queries
from jobworkerp.dashboard.http import Request, Response
from jobworkerp.dashboard.inflight import DEFAULT_CHANNEL, UNKNOWN, ChannelCounts
from jobworkerp.dashboard.session import Session
from jobworkerp.dashboard.site import Site
from jobworkerp.proto.jobworkerp import ext

PRIORITIES = ("HIGH", "MEDIUM", "LOW")


def _label(channel: str) -> str:
    return "default" if channel == DEFAULT_CHANNEL else channel


async def channel_rows(site: Site) -> dict[str, Any]:
    snapshot = await site.inflight.snapshot()
    counts = snapshot.per_channel()
    reported = await site.api.run(queries.channel_info)
    hosts = {info.name: info for info in reported or ()}
    # The serving workers' concurrency; this process's settings only from a front that cannot say.
    concurrency = ({name: info.concurrency for name, info in hosts.items()} if reported is not None
                   else {c.name: c.concurrency for c in site.channels})
    named = {(w.data.channel or DEFAULT_CHANNEL) for w in snapshot.workers.values() if w.data is not None}
    names = sorted(set(concurrency) | {c.name for c in site.channels} | named | set(counts),
                   key=lambda n: (n == UNKNOWN, n != DEFAULT_CHANNEL, n))
    workers_on = Counter((w.data.channel or DEFAULT_CHANNEL) for w in snapshot.workers.values() if w.data is not None)
    rows: list[dict[str, Any]] = []
    for name in names:
        entry = counts.get(name, ChannelCounts())
        rows.append({
            "channel": _label(name),
            "concurrency": concurrency.get(name),
            **_hosts(hosts.get(name)),
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


def _hosts(info: ext.ChannelInfo | None) -> dict[str, Any]:
    """A channel's runner hosts and restarts; None where no worker process reported it."""
    if info is None:
        return {"hosts": None, "exclusive_hosts": None, "shared_hosts": None, "restarts": None,
                "restarts_by_cause": [], "processes": 0}
    causes = sorted(info.host_restarts.items(), key=lambda item: (-item[1], item[0]))
    return {"hosts": info.exclusive_hosts + info.shared_hosts, "exclusive_hosts": info.exclusive_hosts,
            "shared_hosts": info.shared_hosts, "restarts": sum(info.host_restarts.values()),
            "restarts_by_cause": [[cause, count] for cause, count in causes], "processes": info.worker_processes}


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
