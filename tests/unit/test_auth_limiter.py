"""The front's token check: constant-time comparison and the per-peer limit on failures, on a
trio MockClock driven by hand (no wall clock)."""

from __future__ import annotations

import logging

import pytest
from trio.testing import MockClock

from jobworkerp.front.auth import FailureLimiter, TokenCheck, token_matches

TOKEN = "s3cret-token"


def make_check(clock: MockClock, **limits: float) -> TokenCheck:
    limiter = FailureLimiter(max_failures=int(limits.get("max_failures", 3)), window_s=limits.get("window_s", 10.0),
                             cooldown_s=limits.get("cooldown_s", 30.0), clock=clock.current_time)
    return TokenCheck(TOKEN, limiter)


def test_token_matches_only_the_exact_token() -> None:
    assert token_matches(TOKEN, TOKEN)
    assert token_matches(TOKEN.encode(), TOKEN)
    for wrong in (None, "", "s3cret", TOKEN + "x", TOKEN.upper(), "s3crét-token"):
        assert not token_matches(wrong, TOKEN)


def test_wrong_tokens_lock_the_peer_out_until_the_cool_down_ends() -> None:
    clock = MockClock()
    check = make_check(clock)
    for _ in range(3):
        assert check.refusal("10.0.0.1", "wrong") == "missing or wrong token"
    # Locked out: even the right token is refused, without being compared.
    assert "too many failed attempts" in (check.refusal("10.0.0.1", TOKEN) or "")
    clock.jump(29.9)
    assert "too many failed attempts" in (check.refusal("10.0.0.1", TOKEN) or "")
    clock.jump(0.2)
    assert check.refusal("10.0.0.1", TOKEN) is None


def test_other_peers_are_not_locked_out() -> None:
    clock = MockClock()
    check = make_check(clock)
    for _ in range(3):
        check.refusal("10.0.0.1", "wrong")
    assert check.refusal("10.0.0.2", TOKEN) is None
    assert check.refusal("10.0.0.2", "wrong") == "missing or wrong token"


def test_failures_older_than_the_window_do_not_count() -> None:
    clock = MockClock()
    check = make_check(clock)
    for _ in range(10):
        check.refusal("10.0.0.1", "wrong")
        check.refusal("10.0.0.1", "wrong")
        clock.jump(10.0)  # the window: two failures never add up to three
    assert check.refusal("10.0.0.1", TOKEN) is None


def test_a_right_token_clears_the_earlier_failures() -> None:
    clock = MockClock()
    check = make_check(clock)
    for _ in range(5):
        check.refusal("10.0.0.1", "wrong")
        check.refusal("10.0.0.1", "wrong")
        assert check.refusal("10.0.0.1", TOKEN) is None


def test_a_burst_is_logged_a_few_times_not_once_per_call(caplog: pytest.LogCaptureFixture) -> None:
    clock = MockClock()
    check = make_check(clock)
    with caplog.at_level(logging.WARNING, logger="jobworkerp.front.auth"):
        for _ in range(200):
            check.refusal("10.0.0.1", "guess-1234")
        clock.jump(31.0)
        assert check.refusal("10.0.0.1", TOKEN) is None
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages  # first failure, locked out, allowed again (with a count)
    assert "refusing it for 30 s" in messages[1]
    assert "197 attempt(s) refused" in messages[2]
    assert not any(TOKEN in m or "guess-1234" in m for m in messages)  # neither token is logged


def test_the_peer_table_is_bounded() -> None:
    clock = MockClock()
    limiter = FailureLimiter(max_failures=3, max_peers=100, clock=clock.current_time)
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._peers) == 100


def test_the_token_is_not_in_the_checks_repr() -> None:
    assert TOKEN not in repr(make_check(MockClock()))
