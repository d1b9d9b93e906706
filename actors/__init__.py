"""Generic trio actor and supervision runtime.

The package knows nothing about the application that uses it. Submodules are
imported lazily on purpose: ``actors._host_main`` runs inside every runner host
process, and importing this package there must not pull in trio (it would add
start-up latency to every host).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Actor": "actors.actor",
    "ActorStopped": "actors.actor",
    "ChildSpec": "actors.supervisor",
    "Supervisor": "actors.supervisor",
    "SupervisorEscalation": "actors.supervisor",
    "HostCrashed": "actors.process_pool",
    "ProcessPool": "actors.process_pool",
    "open_process_pool": "actors.process_pool",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Resolve the public names on first use (see the module docstring for why)."""
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'actors' has no attribute {name!r}")
    return getattr(importlib.import_module(module_name), name)
