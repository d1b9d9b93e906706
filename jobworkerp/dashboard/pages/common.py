"""What several pages share: reading ids and times from requests, the runner codecs."""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

from jobworkerp.client.protocodec import CodecError, MessageCodec, compile_first_message, encode_input
from jobworkerp.dashboard.http import HttpError, Request
from jobworkerp.dashboard.protoform import collect

PAGE_SIZE = 50


def path_id(match: re.Match[str]) -> int:
    value = int(match.group("id"))
    if not 0 < value < 2**63:
        raise HttpError(404, "no such id")
    return value


def optional_id(text: str, what: str) -> int | None:
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise HttpError(400, f"{what}: expected an id, got {text!r}") from None
    if not 0 < value < 2**63:
        raise HttpError(400, f"{what}: out of range")
    return value


def offset_arg(request: Request, name: str = "offset") -> int:
    text = request.arg(name, "0")
    try:
        value = int(text)
    except ValueError:
        raise HttpError(400, f"{name}: expected a number, got {text!r}") from None
    return max(0, value)


def first(form: dict[str, list[str]], name: str, default: str = "") -> str:
    values = form.get(name)
    return values[0] if values else default


def local_time_ms(text: str, tz_minutes: str) -> int | None:
    """A datetime-local value (the browser's time zone, as `tz_minutes`: JavaScript's
    getTimezoneOffset, set by app.js; UTC without it), or epoch ms, -> epoch ms."""
    text = text.strip()
    if not text:
        return None
    if text.isdigit():
        return int(text)
    try:
        naive = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise HttpError(400, f"not a date and time: {text!r}") from None
    try:
        offset = int(tz_minutes or "0")
    except ValueError:
        offset = 0
    if naive.tzinfo is None:
        naive = naive.replace(tzinfo=datetime.UTC) + datetime.timedelta(minutes=offset)
    return int(naive.timestamp() * 1000)


def codec_of(proto_text: str | None) -> MessageCodec | None:
    """The runner message for `proto_text`, or None when the runner has none (raw text) or its
    text does not compile (the raw inputs still work)."""
    if not (proto_text or "").strip():
        return None
    try:
        return compile_first_message(proto_text)
    except CodecError:
        return None


def enum_names(enum: Any) -> list[str]:
    return [member.name for member in enum]


def posted_message(proto_text: str | None, form: dict[str, list[str]], prefix: str, label: str) -> bytes:
    """The bytes of the message a form posted for `proto_text` (a worker's settings, a job's
    args): its raw JSON field (`<prefix>_json`) when given, else the generated form's fields."""
    raw = first(form, f"{prefix}_json")
    if raw.strip():
        return encode_input(proto_text, raw, f"{label} (raw JSON)")
    codec = codec_of(proto_text)
    if codec is None:
        return b""
    return codec.encode_json(json.dumps(collect(codec.message_class.DESCRIPTOR, form, prefix)), label)
