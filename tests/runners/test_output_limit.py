"""JOB_OUTPUT_MAX_BYTES inside real runner hosts (runners/output_limit.py): COMMAND stdout, HTTP
bodies (plain, endless, compressed) and any runner's items stop at the limit and fail the job with
OTHER_ERROR naming the setting; stderr and 5xx bodies are read only as far as an error message
needs. The limit reaches the hosts through the environment the server gives them."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from actors.process_pool import ProcessPool
from jobworkerp.app import RUNNER_HOST_PRELOAD
from jobworkerp.config import ConfigError, load_config
from jobworkerp.proto.jobworkerp.data import ResultStatus
from jobworkerp.proto.jobworkerp.runner import (
    CommandArgs,
    CommandRunnerSettings,
    HttpRequestArgs,
    HttpRequestResult,
    HttpRequestRunnerSettings,
)
from jobworkerp.runners.base import RetryableError
from jobworkerp.runners.command import STDERR_LIMIT
from jobworkerp.runners.host import run_job
from jobworkerp.runners.output_limit import OutputTooLarge
from jobworkerp.runners.policy import host_environment

pytestmark = pytest.mark.timeout(120)
LIMIT = 64 * 1024
COMMAND_REF = "jobworkerp.runners.command:CommandRunner"
HTTP_REF = "jobworkerp.runners.http_request:HttpRequestRunner"
RAW_ECHO_REF = f"plugin:{Path(__file__).resolve().parents[1] / 'chaos' / 'plugins' / 'raw_echo.py'}:RawEchoRunner"


class BigBodyHandler(BaseHTTPRequestHandler):
    """/size/N: N bytes; /endless: chunks until the client hangs up; /gzip/N: N zero bytes gzipped;
    /fail/N: a 503 with an N-byte body."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        kind, _, size = self.path.strip("/").partition("/")
        if kind == "endless":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"x" * 65536
            try:
                while True:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                return
        body = b"y" * int(size)
        if kind == "gzip":
            body = gzip.compress(b"\0" * int(size))
        self.send_response(503 if kind == "fail" else 200)
        if kind == "gzip":
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def big_http() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BigBodyHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def hosts() -> ProcessPool:
    """A one-host pool given what the server would give it with JOB_OUTPUT_MAX_BYTES=64 KiB."""
    config = load_config({"JOB_OUTPUT_MAX_BYTES": str(LIMIT)}, dotenv_path=None)
    return ProcessPool(1, preload=RUNNER_HOST_PRELOAD, env=host_environment(config))


def command(name: str) -> bytes:
    return bytes(CommandRunnerSettings(name=name))


def argv(*args: str) -> bytes:
    return bytes(CommandArgs(args=list(args)))


def test_the_setting_is_bounded_and_defaults_to_8_mib() -> None:
    assert load_config({}, dotenv_path=None).job_output_max_bytes == 8 * 1024 * 1024
    for bad in ("1023", "0", "4294967296", "lots"):
        with pytest.raises(ConfigError, match="JOB_OUTPUT_MAX_BYTES"):
            load_config({"JOB_OUTPUT_MAX_BYTES": bad}, dotenv_path=None)


async def test_command_stdout_up_to_the_limit_passes_and_beyond_fails_naming_it() -> None:
    async with hosts() as pool:
        out = await pool.run(run_job, COMMAND_REF, command("head"), argv("-c", str(LIMIT), "/dev/zero"), 1, False)
        assert out == [b"\0" * LIMIT]
        with pytest.raises(OutputTooLarge) as info:
            await pool.run(run_job, COMMAND_REF, command("head"), argv("-c", str(LIMIT + 1), "/dev/zero"), 1, False)
        assert info.value.status == ResultStatus.OTHER_ERROR
        assert f"JOB_OUTPUT_MAX_BYTES ({LIMIT} bytes)" in info.value.message
        assert "'head'" in info.value.message
        # The host is still usable: the failure was the job's, not the host's.
        assert await pool.run(run_job, COMMAND_REF, command("echo"), argv("ok"), 1, False) == [b"ok\n"]


async def test_endless_stdout_is_cut_off_and_the_command_killed() -> None:
    """`cat /dev/zero` never ends by itself: the run returns only because the runner stopped
    reading at the limit and killed it."""
    async with hosts() as pool:
        with pytest.raises(OutputTooLarge, match="stdout of command 'cat'"):
            await pool.run(run_job, COMMAND_REF, command("cat"), argv("/dev/zero"), 1, False)


async def test_huge_stderr_of_a_failing_command_keeps_only_its_tail() -> None:
    script = f"head -c {4 * LIMIT} /dev/zero | tr '\\0' e >&2; printf END >&2; exit 3"
    async with hosts() as pool:
        with pytest.raises(RetryableError) as info:
            await pool.run(run_job, COMMAND_REF, command("sh"), argv("-c", script), 1, False)
    assert "exit code 3" in info.value.message and info.value.message.endswith("END")
    assert len(info.value.message) < STDERR_LIMIT + 200


async def test_any_runners_items_are_checked_before_they_leave_the_host() -> None:
    """A plugin returns its items all at once: `run_job` refuses them in the host."""
    async with hosts() as pool:
        assert await pool.run(run_job, RAW_ECHO_REF, b"", b"a" * LIMIT, 1, False) == [b"a" * LIMIT]
        with pytest.raises(OutputTooLarge, match="the output of runner plugin:"):
            await pool.run(run_job, RAW_ECHO_REF, b"", b"a" * (LIMIT + 1), 1, False)


def http(base_url: str) -> bytes:
    return bytes(HttpRequestRunnerSettings(base_url=base_url))


def get(path: str) -> bytes:
    return bytes(HttpRequestArgs(method="GET", path=path))


async def test_http_bodies_stop_at_the_limit(big_http: str) -> None:
    async with hosts() as pool:
        [item] = await pool.run(run_job, HTTP_REF, http(big_http), get(f"/size/{LIMIT - 1024}"), 1, False)
        assert HttpRequestResult.parse(item).content == "y" * (LIMIT - 1024)
        with pytest.raises(OutputTooLarge, match="the body of GET"):
            await pool.run(run_job, HTTP_REF, http(big_http), get(f"/size/{LIMIT + 1}"), 1, False)
        with pytest.raises(OutputTooLarge, match="the body of GET"):
            await pool.run(run_job, HTTP_REF, http(big_http), get("/endless"), 1, False)
        # Compressed, 16 MiB of zeros is 16 KB on the wire: counted as it decompresses.
        with pytest.raises(OutputTooLarge, match="the body of GET"):
            await pool.run(run_job, HTTP_REF, http(big_http), get(f"/gzip/{16 * 1024 * 1024}"), 1, False)


async def test_http_5xx_body_is_read_only_for_its_error_message(big_http: str) -> None:
    async with hosts() as pool:
        with pytest.raises(RetryableError) as info:
            await pool.run(run_job, HTTP_REF, http(big_http), get(f"/fail/{4 * LIMIT}"), 1, False)
    assert "HTTP 503" in info.value.message
    assert len(info.value.message) < 4096 + 200
