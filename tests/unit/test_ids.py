from __future__ import annotations

import pytest

from jobworkerp.ids import MAX_NODE, SnowflakeGenerator, split_id

pytestmark = pytest.mark.timeout(10)


def test_layout_is_ms_node_seq() -> None:
    gen = SnowflakeGenerator(node_id=5, clock=lambda: 1_700_000_000.123)
    first, second = gen.next_id(), gen.next_id()
    assert split_id(first) == (1_700_000_000_123, 5, 0)
    assert split_id(second) == (1_700_000_000_123, 5, 1)


def test_ids_stay_increasing_when_sequence_wraps_or_clock_steps_back() -> None:
    now = [1_700_000_000.0]
    gen = SnowflakeGenerator(node_id=1, clock=lambda: now[0])
    ids = [gen.next_id() for _ in range(5000)]  # more than 4096 in one millisecond
    now[0] -= 1.0  # clock steps back one second
    ids += [gen.next_id() for _ in range(10)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_node_id_out_of_range_is_rejected() -> None:
    with pytest.raises(ValueError, match="node_id"):
        SnowflakeGenerator(node_id=1024)


def test_moving_to_another_node_keeps_ids_increasing() -> None:
    gen = SnowflakeGenerator(node_id=5, clock=lambda: 1_700_000_000.123)
    before = gen.next_id()
    gen.move_to(9)
    after = gen.next_id()
    assert after > before
    assert split_id(after)[1] == 9
    with pytest.raises(ValueError, match="node_id"):
        gen.move_to(MAX_NODE + 1)
