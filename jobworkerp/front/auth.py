"""The auth token check of the gRPC front, and a per-peer limit on failed attempts.

The token is compared in constant time, so the time a wrong guess takes says nothing about how
much of it was right. A peer (one remote address, any port: every new connection has a new
port) that fails `max_failures` times within `window_s` is refused without a comparison for
`cooldown_s`, so guessing is slow; each burst is logged once when the peer is first refused, not
once per call (its first failure, the start of its cool-down and the end of it), so a guessing
client cannot flood the log either.

Limits worth knowing: peers behind one proxy or NAT share an address, so one misconfigured
client there locks out the others for a cool-down; the table is bounded (`max_peers`, oldest
forgotten first), so an attacker with very many addresses gets a fresh count per address.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MAX_FAILURES = 10  # failed attempts of one peer within WINDOW_S before it is refused
WINDOW_S = 60.0
COOLDOWN_S = 60.0
MAX_PEERS = 10_000  # peers remembered; the oldest are forgotten first


def token_matches(presented: str | bytes | None, token: str) -> bool:
    """True if the presented metadata value is the token; constant time in the token's length."""
    if presented is None:
        presented = b""
    if isinstance(presented, str):
        presented = presented.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(presented, token.encode("utf-8"))


@dataclass
class _Peer:
    failures: list[float] = field(default_factory=list)  # times of failures within the window
    blocked_until: float = 0.0
    refused: int = 0  # attempts refused during the current cool-down


class FailureLimiter:
    """Failed auth attempts per peer, on a clock the caller provides (monotonic seconds)."""

    def __init__(self, *, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S,
                 cooldown_s: float = COOLDOWN_S, max_peers: int = MAX_PEERS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self.max_peers = max_peers
        self._clock = clock
        self._peers: OrderedDict[str, _Peer] = OrderedDict()

    def blocked(self, peer: str) -> bool:
        """True if the peer is in a cool-down: refuse it without looking at its token."""
        state = self._peers.get(peer)
        if state is None or state.blocked_until == 0.0:
            return False
        if self._clock() < state.blocked_until:
            state.refused += 1
            return True
        if state.refused:
            log.warning("auth: %s is allowed again after its cool-down (%d attempt(s) refused during it)",
                        peer, state.refused)
        del self._peers[peer]  # cool-down over: a fresh count
        return False

    def failed(self, peer: str) -> None:
        """Count a wrong or missing token; start the peer's cool-down at the limit."""
        now = self._clock()
        state = self._peers.pop(peer, None) or _Peer()
        self._peers[peer] = state  # most recently seen last, so the oldest go first
        state.failures = [t for t in state.failures if now - t < self.window_s]
        if not state.failures:  # the first of a burst; the rest are logged only if it is refused
            log.warning("auth: a call from %s had a missing or wrong token", peer)
        state.failures.append(now)
        if len(state.failures) >= self.max_failures:
            state.blocked_until = now + self.cooldown_s
            state.failures.clear()
            log.warning("auth: %s failed %d times within %.0f s; refusing it for %.0f s",
                        peer, self.max_failures, self.window_s, self.cooldown_s)
        while len(self._peers) > self.max_peers:
            self._peers.popitem(last=False)

    def succeeded(self, peer: str) -> None:
        """A right token: the peer's earlier failures no longer count."""
        self._peers.pop(peer, None)


class TokenCheck:
    """Decides one call: None to let it through, or why it is refused."""

    def __init__(self, token: str, limiter: FailureLimiter) -> None:
        self._token = token
        self._limiter = limiter

    def refusal(self, peer: str, presented: str | bytes | None) -> str | None:
        if self._limiter.blocked(peer):
            return "too many failed attempts from this address; try again later"
        if token_matches(presented, self._token):
            self._limiter.succeeded(peer)
            return None
        self._limiter.failed(peer)
        return "missing or wrong token"

    def __repr__(self) -> str:
        return "TokenCheck(token=<redacted>)"
