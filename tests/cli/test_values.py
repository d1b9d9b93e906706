"""Option value parsing: --run-after-time, --worker, --priority, --next-workers."""

from __future__ import annotations

import argparse
import time

import pytest

from jobworkerp.cli.client import values

pytestmark = pytest.mark.timeout(10)


def test_run_after_time_small_values_are_relative() -> None:
    before = int(time.time() * 1000)
    value = values.run_after_time("1000")
    assert before + 1000 <= value <= int(time.time() * 1000) + 1000


def test_run_after_time_large_values_are_absolute_and_zero_is_now() -> None:
    assert values.run_after_time("1700000000000") == 1700000000000
    assert values.run_after_time("0") == 0
    with pytest.raises(argparse.ArgumentTypeError):
        values.run_after_time("-5")


def test_worker_ref_is_an_id_when_it_parses_as_an_integer() -> None:
    assert values.worker_ref("42") == 42
    assert values.worker_ref("SleepWorker") == "SleepWorker"


def test_priority_and_lists() -> None:
    assert [values.priority(p) for p in ("HIGH", "medium", "middle", "low")] == ["HIGH", "MEDIUM", "MEDIUM", "LOW"]
    assert values.id_list("3, 4") == [3, 4]
    assert values.id_list("") == []
    with pytest.raises(argparse.ArgumentTypeError):
        values.id_list("3,x")
