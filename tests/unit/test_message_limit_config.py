from __future__ import annotations

import pytest

from jobworkerp.config import ConfigError, load_config

pytestmark = pytest.mark.timeout(10)


def test_the_default_leaves_room_for_4_mb_job_args() -> None:
    assert load_config({}).grpc_max_message_bytes == 8 * 1024 * 1024


def test_a_set_limit_is_read() -> None:
    assert load_config({"GRPC_MAX_MESSAGE_BYTES": "65536"}).grpc_max_message_bytes == 65536


@pytest.mark.parametrize("raw", ["65535", "4294967296", "lots", "-1"])
def test_a_limit_out_of_range_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"GRPC_MAX_MESSAGE_BYTES": raw})
    assert info.value.variable == "GRPC_MAX_MESSAGE_BYTES"
