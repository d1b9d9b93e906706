"""Overload: more work than a channel can take, and what the server does about it.

A concurrency-2 channel runs 0.5 s jobs (4 a second) while many clients enqueue to it as fast
as they can, so its queue fills up to JOB_QUEUE_MAX_LENGTH and stays there. Meanwhile a DIRECT
caller keeps asking for a result on the same channel, and a health probe (a process of its
own) keeps asking whether the server is up. Printed: how many enqueues were accepted and
refused (RESOURCE_EXHAUSTED), what the DIRECT caller got, health latency (p50 / p99 / max)
and the server's resident memory (peak, and at the end), so "bounded memory, refusals instead
of growth, health stays fast" is something you can read off one run.

    python bench/overload.py                      # 20 000 queued, 50 clients, 30 s
    python bench/overload.py --limit 5000 --clients 20 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobworkerp.proto.jobworkerp import data  # noqa: E402
from jobworkerp.proto.jobworkerp import runner as runner_pb  # noqa: E402
from jobworkerp.proto.jobworkerp import service as svc  # noqa: E402
from jobworkerp.testing.server import ServerProcess, connect  # noqa: E402

CHANNEL = "narrow"


@dataclass
class Observed:
    enqueues: Counter[str] = field(default_factory=Counter)  # outcome -> count
    direct: Counter[str] = field(default_factory=Counter)
    health_ms: list[float] = field(default_factory=list)
    health_errors: int = 0
    rss_peak_kib: int = 0
    rss_samples: list[int] = field(default_factory=list)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def sleeper(name: str, response: data.ResponseType) -> data.WorkerData:
    return data.WorkerData(name=name, runner_id=data.RunnerId(value=1), channel=CHANNEL, response_type=response,
                           runner_settings=bytes(runner_pb.CommandRunnerSettings(name="sleep")))


async def enqueuer(port: int, worker: data.WorkerId, until: float, seen: Observed) -> None:
    job = svc.JobRequest(worker_id=worker, args=bytes(runner_pb.CommandArgs(args=["0.5"])))
    async with connect(port) as c:
        while time.monotonic() < until:
            try:
                await c.job.enqueue(job, timeout=30)
                seen.enqueues["accepted"] += 1
            except GRPCError as e:
                seen.enqueues[e.status.name] += 1
                if e.status.name == "RESOURCE_EXHAUSTED":
                    await asyncio.sleep(0.05)  # what a polite client does when told the queue is full
            except Exception as e:
                seen.enqueues[type(e).__name__] += 1


async def direct_caller(port: int, worker: data.WorkerId, until: float, seen: Observed) -> None:
    """DIRECT jobs with a 1 s timeout on the saturated channel, the caller's deadline 3 s."""
    job = svc.JobRequest(worker_id=worker, args=bytes(runner_pb.CommandArgs(args=["0"])), timeout=1000)
    async with connect(port) as c:
        while time.monotonic() < until:
            try:
                reply = await c.job.enqueue(job, timeout=3)
                status = reply.result.data.status if reply.result and reply.result.data else None
                seen.direct[f"result {data.ResultStatus(status).name}" if status is not None else "no result"] += 1
            except GRPCError as e:
                seen.direct[e.status.name] += 1
                if e.status.name == "RESOURCE_EXHAUSTED":
                    await asyncio.sleep(0.2)
            except TimeoutError:
                seen.direct["client deadline"] += 1


async def probe_health(port: int, seconds: float) -> tuple[list[float], int]:
    """Check health every 50 ms for `seconds`; the latencies (ms) and how many checks failed."""
    latencies: list[float] = []
    errors = 0
    until = time.monotonic() + seconds
    async with connect(port) as c:
        stub = HealthStub(c.channel)
        while time.monotonic() < until:
            started = time.perf_counter()
            try:
                await stub.Check(HealthCheckRequest(), timeout=5)
                latencies.append((time.perf_counter() - started) * 1000)
            except Exception:
                errors += 1
            await asyncio.sleep(0.05)
    return latencies, errors


async def health_probe(port: int, until: float, seen: Observed) -> None:
    """The probe runs in a process of its own, as an orchestrator's probe would: inside this
    one it would also time this process's 50 enqueuers queueing on its own event loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--probe-health", str(port), "--seconds", str(until - time.monotonic()),
        stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    report = json.loads(out)
    seen.health_ms.extend(report["ms"])
    seen.health_errors += report["errors"]


async def memory_probe(pid: int, until: float, seen: Observed) -> None:
    while time.monotonic() < until:
        rss = rss_kib(pid)
        seen.rss_samples.append(rss)
        seen.rss_peak_kib = max(seen.rss_peak_kib, rss)
        await asyncio.sleep(0.2)


async def overload(port: int, pid: int, clients: int, seconds: float) -> Observed:
    seen = Observed()
    async with connect(port) as c:
        background = (await c.worker.create(sleeper("overload-bg", data.ResponseType.NO_RESULT))).id
        direct = (await c.worker.create(sleeper("overload-direct", data.ResponseType.DIRECT))).id
    assert background is not None and direct is not None
    seen.rss_peak_kib = rss_kib(pid)
    print(f"server RSS before: {seen.rss_peak_kib / 1024:.1f} MiB", flush=True)
    until = time.monotonic() + seconds
    await asyncio.gather(
        *(enqueuer(port, background, until, seen) for _ in range(clients)),
        direct_caller(port, direct, until, seen),
        health_probe(port, until, seen),
        memory_probe(pid, until, seen),
    )
    return seen


def report(seen: Observed, limit: int) -> None:
    h = sorted(seen.health_ms)
    p99 = h[min(len(h) - 1, int(len(h) * 0.99))] if h else float("nan")
    rows = [
        ("enqueues", ", ".join(f"{k} {v}" for k, v in seen.enqueues.most_common())),
        ("DIRECT calls", ", ".join(f"{k} {v}" for k, v in seen.direct.most_common()) or "none"),
        ("health checks", f"{len(h)} answered, {seen.health_errors} failed; "
                          f"p50 {statistics.median(h) if h else float('nan'):.1f} ms, p99 {p99:.1f} ms, "
                          f"max {max(h, default=float('nan')):.1f} ms"),
        ("server RSS", f"peak {seen.rss_peak_kib / 1024:.1f} MiB, "
                       f"end {seen.rss_samples[-1] / 1024 if seen.rss_samples else 0:.1f} MiB "
                       f"(queue limit {limit} jobs)"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=20_000, help="JOB_QUEUE_MAX_LENGTH of the server")
    parser.add_argument("--clients", type=int, default=50, help="clients enqueueing as fast as they can")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--probe-health", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe_health:  # the health probe's own process (see health_probe)
        latencies, errors = asyncio.run(probe_health(args.probe_health, args.seconds))
        print(json.dumps({"ms": latencies, "errors": errors}))
        return 0
    with tempfile.TemporaryDirectory(prefix="jwoverload-") as tmp:
        server = ServerProcess(Path(tmp), {
            "WORKER_CHANNELS": CHANNEL, "WORKER_CHANNEL_CONCURRENCIES": "2", "WORKER_DEFAULT_CONCURRENCY": "1",
            "JOB_QUEUE_MAX_LENGTH": str(args.limit), "LOG_LEVEL": "WARN"}).start()
        try:
            assert server.proc is not None
            seen = asyncio.run(overload(server.port, server.proc.pid, args.clients, args.seconds))
        finally:
            server.stop(timeout=120)
    report(seen, args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
