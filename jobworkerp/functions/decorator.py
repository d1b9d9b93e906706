"""`@jobworkerp.function`: mark a plain Python function as a runner.

The decorator only records how the function is to be served (its runner name, whether its jobs
may share a host) on the function itself and returns it unchanged, so the function stays an
ordinary function: callable locally, importable by a client (`client.call(fn, ...)`), picklable
by reference. Everything else happens elsewhere, when it is needed: the server's plugin
discovery derives the runner's protos from the type hints (`schema.py`), runner hosts wrap it as
a plugin runner (`jobworkerp.runners.functions`). This module imports nothing of the server, so
`import jobworkerp` and the decorator stay cheap in a user's module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])

ATTRIBUTE = "__jobworkerp_function__"


@dataclass(frozen=True)
class FunctionInfo:
    """How a decorated function is served."""

    name: str  # the runner name (the function's name unless given)
    concurrent: bool  # jobs run together on threads of the shared host (else one host per job)


@overload
def function(fn: F, /) -> F: ...


@overload
def function(*, name: str | None = None, concurrent: bool = False) -> Callable[[F], F]: ...


def function(fn: Any = None, /, *, name: str | None = None, concurrent: bool = False) -> Any:
    """Serve `fn` as a runner named `name` (default: the function's name).

    Its parameters' type hints become the job args message and its return hint the result
    message (see README "Python API"). Plain functions run one job per runner host, so a crash
    or a cancel kills only that host; `concurrent=True` runs its jobs on threads of the channel's
    shared host instead, for functions that mostly wait (I/O) and are thread-safe.
    """

    def mark(target: F) -> F:
        if not callable(target) or isinstance(target, type):
            raise TypeError(f"@jobworkerp.function decorates a function, not {target!r}")
        if not isinstance(concurrent, bool):
            raise TypeError(f"@jobworkerp.function(concurrent=...) must be True or False, got {concurrent!r}")
        runner_name = target.__name__ if name is None else name
        setattr(target, ATTRIBUTE, FunctionInfo(runner_name, concurrent))
        return target

    return mark if fn is None else mark(fn)


def function_info(obj: object) -> FunctionInfo | None:
    """The FunctionInfo of a decorated function, None for anything else."""
    try:
        info = getattr(obj, ATTRIBUTE, None)
    except Exception:  # an object whose __getattr__ raises something else: not ours either way
        return None
    return info if isinstance(info, FunctionInfo) else None
