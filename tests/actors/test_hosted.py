"""The call table of a shared host (in-process): cancels that come before, during and after a call."""

from __future__ import annotations

import threading

from actors.hosted import CallTable


def _wait_for_hooks() -> None:
    """Hooks run on a thread of their own (the host's reader must not wait for them)."""
    for thread in threading.enumerate():
        if thread.name.startswith("cancel-"):
            thread.join()


def test_a_call_cancelled_before_it_begins_does_not_begin() -> None:
    calls = CallTable()
    calls.cancel(7)
    assert calls.begin(7) is False
    assert calls.begin(8) is True  # others are not affected


def test_a_hook_registered_after_the_cancel_runs_at_once_and_the_call_knows() -> None:
    calls = CallTable()
    assert calls.begin(1)
    assert not calls.cancelled()
    calls.cancel(1)  # before the call registered anything: nothing to run yet
    ran: list[str] = []
    calls.on_cancel(lambda: ran.append("late"))
    assert ran == ["late"] and calls.cancelled()
    calls.end(1)
    assert not calls.cancelled()


def test_hooks_of_a_running_call_run_on_cancel_and_not_after_it_ended() -> None:
    calls = CallTable()
    ran: list[int] = []
    assert calls.begin(1)
    calls.on_cancel(lambda: ran.append(1))
    calls.cancel(1)
    _wait_for_hooks()
    assert ran == [1]
    calls.end(1)
    assert calls.begin(2)
    calls.on_cancel(lambda: ran.append(2))
    calls.end(2)
    calls.cancel(2)  # the reply crossed the cancel: nothing runs, and the table stays small
    _wait_for_hooks()
    assert ran == [1]


def test_a_failing_hook_does_not_stop_the_others() -> None:
    calls = CallTable()
    ran: list[str] = []
    assert calls.begin(1)
    calls.on_cancel(lambda: 1 / 0)  # type: ignore[func-returns-value]
    calls.on_cancel(lambda: ran.append("second"))
    calls.cancel(1)
    _wait_for_hooks()
    assert ran == ["second"]
