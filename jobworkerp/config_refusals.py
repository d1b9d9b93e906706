"""Upstream settings this server does not honour, refused at start-up by name.

Why: upstream reads these (README: Configuration, "beyond upstream" aside), and a user who copies
an upstream `.env` would otherwise get none of them, silently: pool sizes that do nothing. A
refusal (exit 2, like every other bad setting) names the variable and says what to do instead.
A feature that comes to honour one of them deletes its entry here and reads the variable in
config.py.
"""

from __future__ import annotations

from collections.abc import Mapping

# Set to anything (but blank) these stop start-up. Features not built yet: the entry goes once
# the feature reads the variable (OTLP_ADDR and ZIPKIN_ADDR went with tracing, jobworkerp/tracing/).
NOT_SUPPORTED_YET: dict[str, str] = {}
# Upstream's tuning of parts this server does not have: no equivalent to honour.
NO_EQUIVALENT = {
    "SQLITE_MAX_CONNECTIONS": "not used here: Standalone keeps one SQLite connection and serialises "
                              "its calls (jobworkerp/storage/sqlite.py); unset it",
    "REDIS_POOL_CONNECTION_TIMEOUT_MSEC": "not supported: Redis connections are retried with backoff "
                                          "(README: Configuration); only REDIS_POOL_SIZE sizes the pool; unset it",
    "REDIS_POOL_IDLE_TIMEOUT_MSEC": "not supported: idle Redis connections are kept; only REDIS_POOL_SIZE "
                                    "sizes the pool; unset it",
    "REDIS_POOL_MAX_LIFETIME_MSEC": "not supported: Redis connections are kept until they fail; only "
                                    "REDIS_POOL_SIZE sizes the pool; unset it",
    "REDIS_POOL_MIN_IDLE": "not supported: only REDIS_POOL_SIZE sizes the pool; unset it",
    "MEMORY_CACHE_NUM_COUNTERS": "not used here: the only in-process cache holds worker definitions, bounded "
                                 "by their count and WORKER_CACHE_TTL_SECONDS; unset it",
    "MEMORY_CACHE_MAX_COST": "not used here: the only in-process cache holds worker definitions, bounded "
                             "by their count and WORKER_CACHE_TTL_SECONDS; unset it",
    "MEMORY_CACHE_USE_METRICS": "not used here: there are no cache metrics; unset it",
}


def refusal(env: Mapping[str, str]) -> tuple[str, str] | None:
    """The first setting in `env` this server refuses, and why; None when there is none.

    Blank counts as unset, as for every other variable (config.py `_get`)."""
    for table in (NOT_SUPPORTED_YET, NO_EQUIVALENT):
        for var, why in table.items():
            if env.get(var, "").strip():
                return var, why
    return None
