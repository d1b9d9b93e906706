"""jobworkerp: a job worker system that speaks the jobworkerp v0.7 gRPC protocol.

`jobworkerp.function` (the decorator that makes a plain function a runner) is loaded on first
use, so `import jobworkerp` stays as cheap as it was for everything else (server, CLI, hosts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobworkerp.functions.decorator import function as function

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "function":
        from jobworkerp.functions.decorator import function

        return function
    raise AttributeError(f"module 'jobworkerp' has no attribute {name!r}")
