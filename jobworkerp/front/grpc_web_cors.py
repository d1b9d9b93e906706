"""CORS for the grpc-web listener: which browser pages may call it, and the headers they need.

A grpc-web call from a page is a cross-origin POST with a Content-Type no form can send, so the
browser asks first (an OPTIONS preflight) and calls only if the answer names the page's origin.
The listener answers only the origins GRPC_WEB_CORS_ORIGINS lists (none by default): answering
any origin would let every web page a user opens drive a server on their machine that has no
AUTH_TOKEN. A request without an Origin header does not come from a page's script and is served
as it is. The answer exposes `grpc-status` and `grpc-message` (and `grpc-status-details-bin`),
which a page could not otherwise read where a server sends them as headers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

PREFLIGHT_MAX_AGE_S = 86_400  # how long a browser may reuse a preflight's answer
EXPOSED = "grpc-status, grpc-message, grpc-status-details-bin"
# Headers a grpc-web client sends (besides the token's), allowed when a preflight names none.
DEFAULT_ALLOWED = ("content-type", "x-grpc-web", "x-user-agent", "grpc-timeout")

Headers = list[tuple[str, str]]
# What a preflight may ask for, to be echoed: header names (RFC 9110 tokens) and commas. An
# origin is echoed only once listed, or with `*` if it is plain ASCII (browsers send punycode).
_HEADER_LIST = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+(\s*,\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+)*")


class CorsPolicy:
    def __init__(self, origins: Sequence[str], auth_metadata_key: str) -> None:
        self._any = tuple(origins) == ("*",)
        self._origins = frozenset(origins)
        self._default_allowed = ", ".join((*DEFAULT_ALLOWED, auth_metadata_key))

    def allows(self, origin: str | None) -> bool:
        """No Origin (not a page) or one GRPC_WEB_CORS_ORIGINS lists."""
        if origin is None:
            return True
        return (self._any and origin.isascii()) or origin.lower() in self._origins

    def response_headers(self, origin: str | None) -> Headers:
        """Headers of an answer to an allowed request: the page may read it and its status."""
        if origin is None:
            return []
        return [("access-control-allow-origin", origin), ("vary", "origin"),
                ("access-control-expose-headers", EXPOSED)]

    def preflight_headers(self, origin: str | None, requested_headers: str | None) -> Headers:
        """The answer to an allowed preflight. The headers the page asks to send are allowed as
        asked: they are call metadata, and the token check does not depend on which are sent."""
        requested = (requested_headers or "").strip()
        allowed = requested if _HEADER_LIST.fullmatch(requested) else None
        return [*self.response_headers(origin),
                ("access-control-allow-methods", "POST, OPTIONS"),
                ("access-control-allow-headers", allowed or self._default_allowed),
                ("access-control-max-age", str(PREFLIGHT_MAX_AGE_S))]
