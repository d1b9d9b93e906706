"""`Client.call(fn, ...)`: a decorated function's arguments in, its typed return value out.

The client derives the function's schema from its own copy of the function (the same code the
server ran at discovery, `jobworkerp.functions.schema`), checks that the runner the server
publishes under that name has the same messages (a client and a server with different versions
of the module would otherwise exchange fields by number that mean different things), converts
the arguments to the message's JSON form and the decoded result back into the annotated type.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from jobworkerp.client.errors import ClientError, InvalidArgument
from jobworkerp.client.models import Runner
from jobworkerp.functions.convert import ConversionError, decode_fields, decode_value, encode_fields
from jobworkerp.functions.decorator import function_info
from jobworkerp.functions.schema import FunctionSchema, Message, derive_schema


def schema_of(fn: Callable[..., Any]) -> FunctionSchema:
    """The schema of a decorated function; TypeError for anything else."""
    if function_info(fn) is None:
        raise TypeError(f"{fn!r} is not decorated with @jobworkerp.function")
    return derive_schema(fn)


def check_published(schema: FunctionSchema, runner: Runner) -> None:
    """Refuse to call a runner whose messages are not the ones this copy of the function derives."""
    if runner.args_proto != schema.args_proto or (runner.result_proto or None) != schema.result_proto:
        raise ClientError(f"runner {runner.name!r} on the server does not have the messages of this version of "
                          f"function {schema.runner_name}: restart the server with the same module, or update this one")


def encode_arguments(fn: Callable[..., Any], schema: FunctionSchema, args: tuple[Any, ...],
                     kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The args message's JSON form for `fn(*args, **kwargs)` (TypeError as for a local call)."""
    bound = inspect.signature(fn).bind(*args, **kwargs)
    try:
        return encode_fields(schema.params, bound.arguments)
    except ConversionError as e:
        raise InvalidArgument(f"{schema.runner_name}: {e}") from None


def decode_return(schema: FunctionSchema, output: list[Any]) -> Any:
    """The function's return value from its job's decoded output (one result message, or none)."""
    if schema.result is None:
        return None
    if len(output) != 1 or not isinstance(output[0], Mapping):
        raise ClientError(f"{schema.runner_name}: expected one result message, got {output!r}")
    try:
        if isinstance(schema.result, Message):
            return decode_value(output[0], schema.result, "return")
        return decode_fields([schema.result], output[0], "return.")["result"]
    except ConversionError as e:
        raise ClientError(f"{schema.runner_name}: the result does not fit the return hint: {e}") from None
