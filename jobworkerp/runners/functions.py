"""A `@jobworkerp.function` as a plugin runner class: what discovery describes and hosts run.

`function_runner_class(fn)` builds a class that meets the plugin contract (`plugins.py`): no
settings, the args and result protos derived from the hints (`jobworkerp.functions.schema`),
`run(args)` decoding the args message into keyword arguments (dataclasses rebuilt), calling the
function, and encoding its return value into the result message. The class carries the
function's module and qualname, so the target discovery records for it (`file.py:name`) resolves
to the function again in a runner host, where `plugins.plugin_factory` wraps it with this. A
plain function is not `concurrent`: its jobs get a host each, so a crash or a cancel (the host is
killed) touches only its own job.

Async functions run on an event loop of their own per job (`asyncio.run`); in a shared host
(`concurrent=True`) `cancel()` cancels that job's task from the host's thread, so a cancelled job
ends without retiring the host. A sync concurrent function cannot be stopped from outside: a
cancelled one that keeps running retires its host after the grace period (ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any

from jobworkerp.functions.convert import ConversionError, decode_fields, encode_fields, encode_value
from jobworkerp.functions.decorator import function_info
from jobworkerp.functions.schema import FunctionSchema, Message, derive_schema
from jobworkerp.runners.base import AbortError, OtherError
from jobworkerp.runners.proto_text import compile_proto, first_message, message_class


def is_function(obj: object) -> bool:
    """True for a function decorated with @jobworkerp.function."""
    return function_info(obj) is not None


@functools.cache
def _message(proto_text: str) -> Any:
    """The first message class of proto text (compiled once per host)."""
    descriptor_set = compile_proto(proto_text)
    name = first_message(descriptor_set)
    assert name is not None  # derived texts always declare their message first
    return message_class(descriptor_set, name)


class _FunctionRunner:
    """Base of the generated classes; `fn` and `schema` are set per function."""

    fn: Callable[..., Any]
    schema: FunctionSchema
    settings_proto = ""
    concurrent = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._task: tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = None

    def load(self, settings: bytes) -> None:
        """Functions take no settings: a worker's settings bytes are ignored."""

    def run(self, args: bytes) -> list[bytes]:
        from google.protobuf import json_format

        schema = self.schema
        try:
            message = _message(schema.args_proto).FromString(args)
            data = json_format.MessageToDict(message, preserving_proto_field_name=True,
                                             always_print_fields_with_no_presence=True)
            kwargs = decode_fields(schema.params, data, "args.")
        except ConversionError as e:
            raise OtherError(str(e)) from None
        except Exception as e:  # bytes that are not the args message
            raise OtherError(f"args: not a {schema.runner_name} args message: {e}") from None
        value = self._call(kwargs)
        if schema.result is None or schema.result_proto is None:
            return []
        try:
            if isinstance(schema.result, Message):  # a returned dataclass is the result message itself
                result_json = encode_value(value, schema.result, "return")
            else:
                result_json = encode_fields([schema.result], {"result": value}, "return.")
            message = json_format.ParseDict(result_json, _message(schema.result_proto)())
        except (ConversionError, json_format.ParseError) as e:
            raise OtherError(f"function {schema.runner_name} returned a value that does not fit its hint: {e}") \
                from None
        return [message.SerializeToString()]

    def _call(self, kwargs: dict[str, Any]) -> Any:
        if not inspect.iscoroutinefunction(self.fn):
            return self.fn(**kwargs)
        try:
            return asyncio.run(self._main(kwargs))
        except asyncio.CancelledError:
            raise AbortError(f"function {self.schema.runner_name}: cancelled") from None

    async def _main(self, kwargs: dict[str, Any]) -> Any:
        task = asyncio.current_task()
        assert task is not None
        with self._lock:
            self._task = (asyncio.get_running_loop(), task)
        try:
            return await self.fn(**kwargs)
        finally:
            with self._lock:
                self._task = None

    def cancel(self) -> None:
        """Cancel a running async call (from another thread); nothing to do otherwise."""
        with self._lock:
            running = self._task
        if running is None:
            return
        loop, task = running
        try:
            loop.call_soon_threadsafe(task.cancel)
        except RuntimeError:  # the loop closed meanwhile: the call is over
            pass


@functools.cache
def function_runner_class(fn: Callable[..., Any]) -> type:
    """The plugin runner class of a decorated function; raises SchemaError (a ValueError) naming
    the function and parameter whose hint has no protobuf form."""
    schema = derive_schema(fn)
    info = function_info(fn)
    assert info is not None
    return type(fn.__name__, (_FunctionRunner,), {
        "__module__": fn.__module__,
        "__qualname__": fn.__qualname__,  # discovery's target for it resolves to the function
        "__doc__": fn.__doc__,
        "name": schema.runner_name,
        "fn": staticmethod(fn),
        "schema": schema,
        "args_proto": schema.args_proto,
        "result_proto": schema.result_proto,
        "concurrent": info.concurrent,
    })
