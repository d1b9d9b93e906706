"""Upstream's settings against a real server: MAX_FRAME_SIZE reaches a client's HTTP/2 connection
(and frames that large are accepted), and the settings this server does not honour stop
start-up naming the variable (exit 2), as a malformed value does."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import ServerProcess, connect, run

pytestmark = pytest.mark.timeout(120)

FRAME = 1 << 20
H2_DEFAULT_FRAME = 16384


@pytest.fixture(scope="module")
def big_frames(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("frames"), {"MAX_FRAME_SIZE": str(FRAME)}).start()
    yield proc
    assert proc.stop() == 0, proc.log()


def _frame_sizes_seen_by_a_client(port: int, name_length: int) -> tuple[int, int, Status | None]:
    """(the server's MAX_FRAME_SIZE as the client's h2 connection holds it, the largest frame the
    client may send, the status of a call whose request is `name_length` bytes and more)."""

    async def scenario() -> tuple[int, int, Status | None]:
        async with connect(port) as c:
            status = None
            try:
                await c.worker.find_by_name(svc.WorkerNameRequest(name="x" * name_length))
            except GRPCError as e:
                status = e.status
            h2 = c.channel._protocol.connection._connection  # type: ignore[union-attr]
            return h2.remote_settings.max_frame_size, h2.max_outbound_frame_size, status

    return run(scenario())


def test_max_frame_size_is_advertised_and_large_frames_are_accepted(big_frames: ServerProcess) -> None:
    # grpclib sends a message in frames as large as the server allows (and its flow-control
    # window, 4 MiB): this request goes as one frame of ~200 KB, which h2 would refuse with a
    # connection error if the setting had not taken effect on the server's side too.
    advertised, outbound, status = _frame_sizes_seen_by_a_client(big_frames.port, 200_000)
    assert (advertised, outbound) == (FRAME, FRAME)
    assert status is None  # answered (an empty answer: no worker has that name)
    assert big_frames.alive()


def test_without_max_frame_size_h2s_default_is_advertised(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()
    try:
        advertised, _, status = _frame_sizes_seen_by_a_client(server.port, 200_000)
    finally:
        assert server.stop() == 0, server.log()
    assert advertised == H2_DEFAULT_FRAME
    assert status is None  # sent in 16 KiB frames, answered all the same


@pytest.mark.parametrize(("env", "says"), [
    ({"MAX_FRAME_SIZE": "16383"}, "16384"),
    ({"MAX_FRAME_SIZE": "16777216"}, "16777215"),
    ({"MAX_FRAME_SIZE": "big"}, "integer"),
    ({"OTLP_ADDR": "127.0.0.1:4317"}, "http://"),
    ({"ZIPKIN_ADDR": "127.0.0.1:9411"}, "http://"),
    ({"MEMORY_CACHE_NUM_COUNTERS": "1296000"}, "unset it"),
    ({"SQLITE_MAX_CONNECTIONS": "20"}, "unset it"),
    ({"REDIS_POOL_CONNECTION_TIMEOUT_MSEC": "5000"}, "unset it"),
    ({"TZ_OFFSET_HOURS": "25"}, "between -24 and 24"),
    ({"LOG_USE_STDOUT": "false"}, "LOG_FILE_DIR"),
    ({"LOG_USE_STDOUT": "sometimes"}, "true or false"),
], ids=lambda v: "-".join(v) if isinstance(v, dict) else None)
def test_refused_setting_stops_start_up_naming_it(tmp_path: Path, env: dict[str, str], says: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "jobworkerp", "all-in-one", "--env-file", str(tmp_path / "none.env")],
        env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    [variable] = env
    assert f"configuration error: {variable}: " in proc.stderr
    assert says in proc.stderr


def test_upstreams_defaults_for_refused_settings_start(tmp_path: Path) -> None:
    """USE_GRPC_WEB=false is upstream's default and changes nothing here; blank counts as unset."""
    server = ServerProcess(tmp_path, {"USE_GRPC_WEB": "false", "OTLP_ADDR": "", "MAX_FRAME_SIZE": "16777215"}).start()
    assert server.stop() == 0, server.log()
