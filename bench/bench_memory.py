"""Does a long-running all-in-one server keep its memory flat? (Upstream leaked per-job channels.)

Runs rounds of jobs of every response type against a fresh server and prints the server's
resident memory after each round. A leak shows as RSS growing round after round; a healthy server
levels off after the first round or two (caches, runner hosts, allocator pools).

Usage: python bench/bench_memory.py [--rounds 5] [--jobs 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import Client, ServerProcess, connect

PLUGINS_DIR = Path(__file__).resolve().parent.parent / "plugins"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def hello_runner_id(c: Client) -> int:
    runners = [r async for r in c.runner.find_list(svc.FindListRequest())]
    return next(r.id.value for r in runners if r.data.name == "hello")


async def one_round(c: Client, workers: dict[str, data.WorkerId], jobs: int) -> None:
    """DIRECT calls, LISTEN_AFTER jobs with a Listen each, and NO_RESULT jobs, `jobs` in all."""
    third = jobs // 3
    for _ in range(third):
        await c.job.enqueue(svc.JobRequest(worker_id=workers["direct"], args=b""))
    ids = [(await c.job.enqueue(svc.JobRequest(worker_id=workers["listen"], args=b""))).id for _ in range(third)]
    await asyncio.gather(*(c.job_result.listen(svc.ListenRequest(job_id=job_id, worker_id=workers["listen"],
                                                                 timeout=60_000)) for job_id in ids))
    last = None
    for _ in range(third):
        last = (await c.job.enqueue(svc.JobRequest(worker_id=workers["none"], args=b""))).id
    # NO_RESULT with store_success: Listen on the last one waits until the round has drained.
    await c.job_result.listen(svc.ListenRequest(job_id=last, worker_id=workers["none"], timeout=60_000))


async def main_async(port: int, pid: int, rounds: int, jobs: int) -> None:
    async with connect(port) as c:
        runner_id = data.RunnerId(value=await hello_runner_id(c))
        kinds = {"direct": (data.ResponseType.DIRECT, False), "listen": (data.ResponseType.LISTEN_AFTER, True),
                 "none": (data.ResponseType.NO_RESULT, True)}
        workers = {}
        for kind, (response_type, store) in kinds.items():
            workers[kind] = (await c.worker.create(data.WorkerData(
                name=f"mem-{kind}", runner_id=runner_id, response_type=response_type, store_success=store,
                store_failure=store, use_static=True))).id
        print(f"start: server RSS {rss_kib(pid) / 1024:.1f} MiB")
        for i in range(1, rounds + 1):
            await one_round(c, workers, jobs)
            print(f"after round {i} ({i * jobs} jobs): server RSS {rss_kib(pid) / 1024:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp), {"PLUGINS_RUNNER_DIR": str(PLUGINS_DIR), "LOG_LEVEL": "WARN",
                                           "WORKER_DEFAULT_CONCURRENCY": "2"}).start()
        try:
            assert server.proc is not None
            asyncio.run(main_async(server.port, server.proc.pid, args.rounds, args.jobs))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
