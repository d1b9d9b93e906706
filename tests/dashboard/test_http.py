"""The dashboard's guards over plain HTTP (no browser): login, CSRF, Host, request size, escaping,
and what happens to DASHBOARD_ADDR at start-up (default port busy: run without it; an explicit
address that cannot be bound: refuse to start, naming the variable)."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from jobworkerp.dashboard.http import MAX_BODY_BYTES
from jobworkerp.dashboard.listen import DEFAULT_ADDR
from jobworkerp.testing.server import ServerProcess
from tests.certs import make_pki
from tests.dashboard.conftest import TOKEN


def _client(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{server.dashboard_port}", timeout=30.0, follow_redirects=False)


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


@contextmanager
def _logged_in(server: ServerProcess) -> Iterator[httpx.Client]:
    with _client(server) as client:
        csrf = _csrf(client.get("/login").text)
        answer = client.post("/login", data={"csrf": csrf, "token": TOKEN})
        assert answer.status_code == 303, answer.text
        yield client


def test_login_is_required_and_the_token_checked(dashboard_server: ServerProcess) -> None:
    with _client(dashboard_server) as client:
        first = client.get("/workers")
        assert first.status_code == 303 and first.headers["location"] == "/login?next=/workers"
        assert "HttpOnly" in first.headers["set-cookie"] and "SameSite=Strict" in first.headers["set-cookie"]
        assert client.get("/api/overview").status_code == 401
        csrf = _csrf(client.get("/login").text)
        wrong = client.post("/login", data={"csrf": csrf, "token": "not-it"})
        assert wrong.status_code == 401 and "wrong token" in wrong.text
        assert client.post("/login", data={"token": TOKEN}).status_code == 403  # no CSRF token
        right = client.post("/login?next=/runners", data={"csrf": csrf, "token": TOKEN})
        assert right.status_code == 303 and right.headers["location"] == "/runners"
        assert client.get("/runners").status_code == 200
        off_site = client.post("/login?next=//evil.example", data={"csrf": _csrf(client.get("/login").text)})
        assert off_site.headers.get("location") != "//evil.example"


def test_posts_need_the_csrf_token_and_our_origin(dashboard_server: ServerProcess) -> None:
    with _logged_in(dashboard_server) as client:
        csrf = _csrf(client.get("/workers/new?runner=1").text)
        form = {"runner": "1", "name": "csrf-probe", "settings.name": "echo"}
        assert client.post("/workers", data=form).status_code == 403
        assert client.post("/workers", data={**form, "csrf": "guess"}).status_code == 403
        foreign = client.post("/workers", data={**form, "csrf": csrf}, headers={"origin": "http://evil.example"})
        assert foreign.status_code == 403
        assert "csrf-probe" not in client.get("/workers").text
        made = client.post("/workers", data={**form, "csrf": csrf})
        assert made.status_code == 303, made.text


def test_bounds_and_headers(dashboard_server: ServerProcess) -> None:
    with _logged_in(dashboard_server) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        big = client.post("/workers", content=b"x" * (MAX_BODY_BYTES + 1),
                          headers={"content-type": "application/x-www-form-urlencoded"})
        assert big.status_code == 413
        assert client.get("/results/123456789").status_code == 404


def test_user_data_is_escaped_in_pages(dashboard_server: ServerProcess) -> None:
    """A worker name and settings with markup come back as text in the list and the detail page."""
    with _logged_in(dashboard_server) as client:
        csrf = _csrf(client.get("/workers/new?runner=1").text)
        name = '<img src=x onerror="alert(1)">'
        made = client.post("/workers", data={"csrf": csrf, "runner": "1", "name": name,
                                             "settings.name": "</pre><script>alert(2)</script>"})
        assert made.status_code == 303, made.text
        for page in (client.get("/workers").text, client.get(made.headers["location"]).text):
            assert "<img src=x" not in page and "<script>alert" not in page
            assert "&lt;img src=x onerror=" in page


def test_without_a_token_only_ip_or_localhost_hosts_and_a_stop_ends_open_streams(tmp_path: Path) -> None:
    """No login without AUTH_TOKEN, but no other Host than an IP or localhost; and a server stopped
    while a live tail is open and the charts follow result streams still exits 0."""
    proc = ServerProcess(tmp_path, dashboard=True).start()
    try:
        with _client(proc) as client:
            assert client.get("/runners").status_code == 200
            assert client.get("/runners", headers={"host": f"localhost:{proc.dashboard_port}"}).status_code == 200
            rebound = client.get("/runners", headers={"host": f"attacker.example:{proc.dashboard_port}"})
            assert rebound.status_code == 421
            csrf = _csrf(client.get("/workers/new?runner=1").text)
            made = client.post("/workers", data={"csrf": csrf, "runner": "1", "name": "tail", "settings.name": "echo"})
            worker_id = made.headers["location"].rsplit("/", 1)[1]
            assert client.get("/api/overview").status_code == 200  # starts following result streams
            with client.stream("GET", f"/results/live/stream?worker={worker_id}") as tail:
                assert tail.headers["content-type"].startswith("text/event-stream")
                lines = tail.iter_lines()
                while next(lines) != "event: ready":
                    pass
                assert proc.stop() == 0, proc.log()
    finally:
        if proc.alive():
            assert proc.stop() == 0, proc.log()


@pytest.fixture
def occupied() -> Iterator[int]:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_an_explicit_address_that_is_busy_stops_start_up(tmp_path: Path, occupied: int) -> None:
    proc = ServerProcess(tmp_path, {"DASHBOARD_ADDR": f"127.0.0.1:{occupied}"})
    proc.proc = subprocess.Popen(
        [sys.executable, "-m", "jobworkerp", "all-in-one", "--env-file", str(tmp_path / "none.env")],
        cwd=tmp_path, env=proc.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = proc.proc.communicate(timeout=60)
    assert proc.proc.returncode == 2, err.decode()
    assert b"DASHBOARD_ADDR" in err and f"127.0.0.1:{occupied}".encode() in err


def test_the_default_address_busy_is_a_warning(tmp_path: Path) -> None:
    host, port = DEFAULT_ADDR.rsplit(":", 1)
    holder = socket.socket()
    try:
        holder.bind((host, int(port)))
        holder.listen()
    except OSError:
        holder.close()  # something else holds it already: busy either way
        holder = None  # type: ignore[assignment]
    try:
        proc = ServerProcess(tmp_path)
        del proc.env["DASHBOARD_ADDR"]  # unset: all-in-one's default
        proc.start()
        try:
            deadline = time.monotonic() + 30
            while "dashboard: not started" not in proc.log() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert f"the default address {DEFAULT_ADDR} is in use" in proc.log()
        finally:
            assert proc.stop() == 0, proc.log()
    finally:
        if holder is not None:
            holder.close()


def test_an_empty_address_turns_it_off(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path, {"DASHBOARD_ADDR": ""}).start()
    try:
        assert "dashboard" not in proc.log()
    finally:
        assert proc.stop() == 0, proc.log()


def test_over_tls_it_serves_https_and_calls_its_own_tls_port(tmp_path: Path) -> None:
    """With GRPC_TLS_* the dashboard is HTTPS, its cookie Secure, and it reaches the API over TLS
    trusting exactly the server's certificate (a CA-signed one here, not a self-signed one)."""
    pki = make_pki(tmp_path)
    env = {"GRPC_TLS_CERT": str(pki.server_cert), "GRPC_TLS_KEY": str(pki.server_key)}
    proc = ServerProcess(tmp_path, env, dashboard=True).start()
    try:
        trust = ssl.create_default_context(cafile=str(pki.ca_cert))
        with httpx.Client(base_url=f"https://127.0.0.1:{proc.dashboard_port}", verify=trust, timeout=30.0) as client:
            page = client.get("/runners")
            assert page.status_code == 200 and "CommandArgs" in page.text
            assert "Secure" in page.headers["set-cookie"]
    finally:
        assert proc.stop() == 0, proc.log()


def test_the_overview_shows_each_channels_runner_hosts(dashboard_server: ServerProcess) -> None:
    """After a COMMAND job (its channel's shared host), the overview shows one runner host for the
    default channel, from ChannelInfoService, in the page and in its JSON."""
    async def run_a_command_job() -> None:
        from grpclib.client import Channel

        from jobworkerp.client.connection import services_over
        from jobworkerp.proto.jobworkerp import data
        from jobworkerp.proto.jobworkerp import runner as runner_pb
        from jobworkerp.proto.jobworkerp import service as svc

        s = services_over(Channel("127.0.0.1", dashboard_server.port), 60, TOKEN)
        try:
            await s.worker.create(data.WorkerData(
                name="hosts-echo", runner_id=data.RunnerId(value=1), response_type=data.ResponseType.DIRECT,
                runner_settings=bytes(runner_pb.CommandRunnerSettings(name="echo"))))
            reply = await s.job.enqueue(svc.JobRequest(worker_name="hosts-echo",
                                                       args=bytes(runner_pb.CommandArgs(args=["x"]))))
            assert reply.result is not None and reply.result.data.status == data.ResultStatus.SUCCESS
        finally:
            s.channel.close()

    asyncio.run(asyncio.wait_for(run_a_command_job(), 120))
    with _logged_in(dashboard_server) as client:
        default = client.get("/api/overview").json()["channels"][0]
        assert default["channel"] == "default"
        assert default["shared_hosts"] == 1 and default["hosts"] == default["exclusive_hosts"] + 1
        assert default["restarts"] == 0 and default["processes"] == 1
        page = client.get("/").text
        assert "runner hosts" in page and "not in the public gRPC API" not in page
        cell = re.search(r'<td class="hosts"[^>]*>(\d+) <small>\((\d+) / (\d+)\)</small>', page)
        assert cell is not None, page
        assert (int(cell.group(1)), int(cell.group(3))) == (default["hosts"], 1)
