"""HTML from templates, escaped by construction.

jinja2 (a well-kept dependency of its own, pallets) with autoescape on for every template: any
value a page shows, job args and outputs included, is HTML-escaped unless a template marks it
otherwise, and none does. Hand-built HTML strings would make each new page a new chance to forget
an escape; this makes forgetting impossible. StrictUndefined turns a misspelt variable into an
error instead of an empty cell.
"""

from __future__ import annotations

import json
from typing import Any

import jinja2

from jobworkerp.cli.client.present import iso

STATUS_CLASS = {"SUCCESS": "ok", "CANCELLED": "muted", "RUNNING": "run", "PENDING": "wait", "queued": "wait",
                "scheduled": "wait", "running": "run", "wait_result": "run"}


def _ms(value: int | None) -> str:
    return (iso(value) or "-") if value else "-"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _status_class(name: str) -> str:
    return STATUS_CLASS.get(name, "bad")


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"


SHOWN_MAX = 256 * 1024  # characters of one value a page shows; the raw bytes view has the rest


def _clip(value: Any) -> str:
    text = value if isinstance(value, str) else _pretty(value)
    if len(text) <= SHOWN_MAX:
        return text
    return f"{text[:SHOWN_MAX]}\n… ({len(text) - SHOWN_MAX} more characters: see the raw bytes)"


def environment() -> jinja2.Environment:
    """Every template compiled now, at start-up: rendering a page then touches no file (no
    auto-reload, whose check is a stat() per render on the event loop)."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("jobworkerp.dashboard", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, auto_reload=False, cache_size=-1)
    env.filters.update(ms=_ms, pretty=_pretty, status_class=_status_class, short=_short, clip=_clip)
    for name in env.list_templates(extensions=["html"]):
        env.get_template(name)
    return env
