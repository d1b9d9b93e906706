"""Python runner plugins: the contract, and loading a plugin class inside a runner host.

The contract: a plugin runner is a Python class with

    name: str                    unique runner name (listed by RunnerService)
    settings_proto: str          .proto text; its first message is the worker settings ("" = none)
    args_proto: str              .proto text; its first message is the job args ("" = raw bytes)
    result_proto: str | None     optional; .proto text of the output items (None/"" = raw bytes)
    load(settings: bytes)        parse settings, prepare; failures are FATAL_ERROR
    run(args: bytes) -> list[bytes]
    run_stream(args: bytes) -> Iterable[bytes]
                                 optional: the output as it is produced, chunk by chunk
    cancel()                     optional: reset before a static runner is reused

raising `jobworkerp.runners.base` errors to choose a job's ResultStatus (anything else is OTHER_ERROR).
The server checks worker settings (at create/update) and job args (at Enqueue) against the first
message of their proto, so a caller sending bytes that do not parse hears INVALID_ARGUMENT at once
rather than from a failed job; with an empty proto the bytes pass unchecked.
Plugins parse their bytes with `proto_messages` (re-exported here from `proto_text`, so a plugin
needs only this module). Where plugins come from, and how the server learns about them without
importing them, is `plugin_discovery`.

A job enqueued for streaming runs `run_stream` when the plugin has one: each chunk it yields is
sent to the job's listeners at once (`runners/streaming.py`), and the job's output is one item,
the chunks joined — what a listener saw, whole. Other jobs run `run` (or, for a plugin with only
`run_stream`, its chunks joined, with nothing sent). JOB_OUTPUT_MAX_BYTES is checked as chunks
come, so a plugin yielding without end is stopped there.

Runner hosts import a plugin only when one of its jobs runs. A directory plugin is loaded from its
file path (recorded in its ref) under a private module name, so it needs no sys.path entry and
cannot shadow or be shadowed by another module of the same name.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from actors.hosted import emitting
from jobworkerp.runners.base import (
    AbortError,
    FatalError,
    OtherError,
    RetryableError,
    RunnerError,
    RunnerLoadError,
)
from jobworkerp.runners.output_limit import CappedBuffer, output_limit
from jobworkerp.runners.proto_text import proto_messages as proto_messages  # re-export: plugins import it from here
from jobworkerp.runners.streaming import emit_piecewise

log = logging.getLogger(__name__)


def _module_name(path: Path) -> str:
    """A private module name per file path, so two plugins named alike never collide in sys.modules."""
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    stem = path.parent.name if path.name == "__init__.py" else path.stem
    safe = "".join(c if c.isalnum() else "_" for c in stem)
    return f"jobworkerp_plugin_{safe}_{digest}"


# A shared runner host loads plugins from several threads at once: without the lock a second
# thread would find the module in sys.modules while the first is still executing it, and miss
# the runner class. Reentrant: a plugin may load another while it is imported.
_load_lock = threading.RLock()


def load_module_from_path(path: Path) -> ModuleType:
    """Import a plugin file (or a package's `__init__.py`) under a private name, once per process."""
    with _load_lock:
        return _load_module_from_path(path)


def _load_module_from_path(path: Path) -> ModuleType:
    name = _module_name(path)
    module = sys.modules.get(name)
    if module is not None:
        return module
    package_dirs = [str(path.parent)] if path.name == "__init__.py" else None
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=package_dirs)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _attribute(obj: Any, qualname: str) -> Any:
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def resolve_target(target: str) -> Any:
    """`/abs/file.py:Qual.Name` (directory plugin) or `module:Qual.Name` (installed) -> the object."""
    location, _, qualname = target.rpartition(":")
    if not location or not qualname:
        raise ImportError(f"bad plugin target {target!r}: expected PATH_OR_MODULE:NAME")
    if os.path.isabs(location):
        module = load_module_from_path(Path(location))
    else:
        module = importlib.import_module(location)
    return _attribute(module, qualname)


def plugin_factory(target: str) -> Callable[[], PluginRunner]:
    """What the runner host instantiates for a plugin ref: the plugin wrapped in PluginRunner
    (a `@jobworkerp.function` first made a plugin class, `runners/functions.py`)."""
    cls = resolve_target(target)
    from jobworkerp.runners.functions import function_runner_class, is_function

    if is_function(cls):
        cls = function_runner_class(cls)
    return functools.partial(PluginRunner, cls)


_PORTABLE_ERRORS: tuple[type[RunnerError], ...] = (
    RunnerLoadError, FatalError, RetryableError, AbortError, OtherError, RunnerError,
)


def _portable(error: RunnerError) -> RunnerError:
    """The same status and message as one of our own classes: the server cannot unpickle a plugin's class."""
    if type(error).__module__ == RunnerError.__module__:
        return error
    for cls in _PORTABLE_ERRORS:
        if isinstance(error, cls):
            return cls(error.message if hasattr(error, "message") else str(error))
    return OtherError(str(error))


def _items(name: str, value: Any) -> list[bytes]:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return [bytes(value)]
    if isinstance(value, (list, tuple)):
        items = []
        for item in value:
            if isinstance(item, (bytes, bytearray, memoryview)):
                items.append(bytes(item))
            elif isinstance(item, str):
                items.append(item.encode("utf-8"))
            else:
                raise OtherError(f"plugin {name}: run() returned a {type(item).__name__} item; items must be bytes")
        return items
    raise OtherError(f"plugin {name}: run() returned {type(value).__name__}; expected a list of bytes")


class PluginRunner:
    """A plugin's runner as the host sees it: plugin failures become job results, never host trouble.

    Exceptions a plugin raises are turned into our picklable RunnerError classes (a plugin's own
    exception class may not exist in the server), load failures into FATAL_ERROR and anything
    unexpected during a run into OTHER_ERROR, with the reason.
    """

    def __init__(self, plugin_class: type) -> None:
        self.name = str(getattr(plugin_class, "name", plugin_class.__name__))
        self._plugin = plugin_class()

    def load(self, settings: bytes) -> None:
        try:
            self._plugin.load(settings)
        except RunnerError as e:
            raise _portable(e) from None
        except (Exception, SystemExit) as e:
            raise RunnerLoadError(f"plugin {self.name}: load failed: {type(e).__name__}: {e}") from None

    def run(self, args: bytes) -> list[bytes]:
        stream = getattr(self._plugin, "run_stream", None)
        try:
            if stream is not None and (emitting() or not hasattr(self._plugin, "run")):
                return [self._collect(stream(args))]
            value = self._plugin.run(args)
        except RunnerError as e:
            raise _portable(e) from None
        except (Exception, SystemExit) as e:
            raise OtherError(f"plugin {self.name}: {type(e).__name__}: {e}") from None
        return _items(self.name, value)

    def _collect(self, chunks: Iterable[Any]) -> bytes:
        """Send each chunk `run_stream` yields (when the job is streamed) and return them joined;
        stops the plugin (closing its generator) once they pass JOB_OUTPUT_MAX_BYTES."""
        limit = output_limit()
        what = f"the output of plugin {self.name}"
        collected = CappedBuffer(limit, what)
        send = emitting()
        iterator = iter(chunks)
        try:
            for chunk in iterator:
                if isinstance(chunk, str):
                    chunk = chunk.encode("utf-8")
                elif not isinstance(chunk, (bytes, bytearray, memoryview)):
                    raise OtherError(f"plugin {self.name}: run_stream() yielded a {type(chunk).__name__}; "
                                     f"chunks must be bytes")
                collected.add(chunk)
                if send:
                    emit_piecewise(bytes(chunk))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
        return bytes(collected.data)

    def cancel(self) -> None:
        cancel = getattr(self._plugin, "cancel", None)
        if cancel is None:
            return
        try:
            cancel()
        except Exception:
            log.exception("plugin %s: cancel() failed", self.name)
