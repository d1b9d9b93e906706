"""Jobs run in runner hosts that see neither the server's secrets nor its working directory.

A COMMAND job can return its own environment (`/usr/bin/env`), so whatever a host inherits is
readable by anyone allowed to create a worker: the hosts get only an allowlist of variables
(RUNNER_ENV_ALLOWLIST extends it). And a host must not import code lying in the server's working
directory (the server was started from there; a `tblib.py` there used to run in every host).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import ServerProcess, connect, run

pytestmark = pytest.mark.timeout(180)

AUTH = {"jobworkerp-auth": "auth-token-7f3a9c"}
SECRETS = {
    "AUTH_TOKEN": AUTH["jobworkerp-auth"],
    "MYSQL_PASSWORD": "mysql-password-51d2e8",
    # Standalone never connects to Redis or MySQL: these only sit in the server's environment.
    "REDIS_URL": "redis://jobworkerp:redis-password-c40b17@127.0.0.1:6379/0",
}
VISIBLE = ("JW_TEST_VISIBLE", "visible-value-2b8e")
INVISIBLE = ("JW_TEST_INVISIBLE", "invisible-value-9d41")
# Modules that, imported from the server's working directory, would leave a marker file.
PLANTED_MODULES = ("tblib", "cloudpickle", "jobworkerp", "actors")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """An all-in-one server with secrets in its environment and RUNNER_ENV_ALLOWLIST naming one variable."""
    env = {**SECRETS, "RUNNER_ENV_ALLOWLIST": VISIBLE[0], VISIBLE[0]: VISIBLE[1], INVISIBLE[0]: INVISIBLE[1],
           "WORKER_DEFAULT_CONCURRENCY": "1"}
    proc = ServerProcess(tmp_path_factory.mktemp("isolation"), env).start()
    yield proc
    assert proc.stop() == 0, proc.log()


def run_command(server: ServerProcess, worker: str, command: str) -> str:
    """Create a DIRECT COMMAND worker running `command` (no arguments); run one job; its stdout."""

    async def scenario() -> svc.CreateJobResponse:
        async with connect(server.port) as c:
            settings = bytes(runner_pb.CommandRunnerSettings(name=command))
            await c.worker.create(data.WorkerData(name=worker, runner_id=data.RunnerId(value=1),
                                                  runner_settings=settings, response_type=data.ResponseType.DIRECT),
                                  metadata=AUTH)
            return await c.job.enqueue(svc.JobRequest(worker_name=worker, args=bytes(runner_pb.CommandArgs())),
                                       metadata=AUTH)

    response = run(scenario())
    assert response.result is not None
    assert response.result.data.status == data.ResultStatus.SUCCESS, (response.result.data, server.log())
    return b"".join(response.result.data.output.items).decode()


def test_a_job_reads_none_of_the_servers_secrets(server: ServerProcess) -> None:
    output = run_command(server, "env-secrets", "/usr/bin/env")
    assert "PATH=" in output  # the job did print its environment
    for name, value in SECRETS.items():
        assert value not in output, f"{name} leaked into the job's environment:\n{output}"
    assert "redis-password" not in output
    assert INVISIBLE[1] not in output


def test_runner_env_allowlist_makes_a_variable_visible_to_jobs(server: ServerProcess) -> None:
    output = run_command(server, "env-allowed", "/usr/bin/env")
    assert f"{VISIBLE[0]}={VISIBLE[1]}\n" in output


def test_a_host_imports_nothing_from_the_servers_working_directory(tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    # A server of its own, so that its first runner host starts after the modules are planted. They
    # are planted once the server is up: `python -m jobworkerp` itself puts its working directory
    # first on its path (the installed `jobworkerp` script does not), and this is about the hosts.
    server = ServerProcess(tmp_path / "server", {"WORKER_DEFAULT_CONCURRENCY": "1"})
    server.workdir.mkdir()
    server.start()
    try:
        for module in PLANTED_MODULES:
            source = f"with open({str(marker)!r}, 'a') as f:\n    f.write({module!r} + ' from ' + __file__ + '\\n')\n"
            (server.workdir / f"{module}.py").write_text(source)
        # No AUTH_TOKEN here: the metadata is simply not checked.
        assert run_command(server, "pwd", "/bin/pwd") == "/\n"  # jobs run in /, not where the server runs
    finally:
        assert server.stop() == 0, server.log()
    assert not marker.exists(), marker.read_text()
