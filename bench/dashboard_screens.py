"""Screenshots of the dashboard under load, for the README: docs/dashboard-overview.png and
docs/dashboard-result.png.

Starts a real all-in-one server (Standalone, in a temporary directory) with the dashboard on a
free port, stores 100 000 results through the API (hello plugin jobs enqueued in batches: real
jobs, not rows written behind the server's back), then keeps a mixed load running — fast hello
jobs on the default channel, COMMAND jobs that fail one time in five and long sleeps on a
`batch` channel, jobs of every priority queued behind them, jobs scheduled for later — and takes
the screenshots with Playwright and Debian's chromium once the charts have a few minutes of data.

    python bench/dashboard_screens.py [--results 100000] [--load-seconds 150] [--out docs]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobworkerp.proto.jobworkerp import data, ext  # noqa: E402
from jobworkerp.proto.jobworkerp import runner as runner_pb  # noqa: E402
from jobworkerp.proto.jobworkerp import service as svc  # noqa: E402
from jobworkerp.testing.server import Client, ServerProcess, connect  # noqa: E402
from tests.browser import chromium_path  # noqa: E402

BATCH = 1000
HELLO_ARGS_PROTO_FIELD = 1  # hello.HelloArgs.arg


def hello_args(text: str) -> bytes:
    encoded = text.encode()
    return bytes([HELLO_ARGS_PROTO_FIELD << 3 | 2, len(encoded)]) + encoded  # a one-field message (< 128 bytes)


async def worker(c: Client, name: str, runner_id: int, settings: bytes, channel: str | None = None) -> data.WorkerId:
    wd = data.WorkerData(name=name, runner_id=data.RunnerId(value=runner_id), runner_settings=settings,
                         channel=channel, response_type=data.ResponseType.NO_RESULT, store_success=True,
                         store_failure=True, use_static=True)
    return (await c.worker.create(wd)).id


async def bulk(c: Client, requests: list[svc.JobRequest]) -> None:
    for start in range(0, len(requests), BATCH):
        await c.bulk.enqueue_batch(ext.EnqueueBatchRequest(items=requests[start:start + BATCH]))


async def wait_stored(c: Client, at_least: int) -> None:
    """Until at least this many results are stored (a bench may count them; the dashboard never does)."""
    while True:
        if (await c.job_result.count(svc.CountCondition())).total >= at_least:
            return
        await asyncio.sleep(0.5)


async def seed_and_load(port: int, results: int, load_s: float, ready: asyncio.Event, ids: dict[str, int]) -> None:
    async with connect(port) as c:
        runners = [r async for r in c.runner.find_list(svc.FindListRequest())]
        hello_id = next(r.id.value for r in runners if r.data.name == "hello")
        hello = await worker(c, "greeter", hello_id, b"")
        flaky = await worker(c, "flaky-report", 1, bytes(runner_pb.CommandRunnerSettings(name="sh")), "batch")
        sleeper = await worker(c, "nightly-export", 1, bytes(runner_pb.CommandRunnerSettings(name="sleep")), "export")
        ids["flaky"] = flaky.value
        started = time.monotonic()
        for start in range(0, results, BATCH * 10):
            await bulk(c, [svc.JobRequest(worker_id=hello, args=hello_args(f"seed-{i}"))
                           for i in range(start, min(results, start + BATCH * 10))])
            await wait_stored(c, start - BATCH * 20)  # keep the queue short: the seed is not the point
        await wait_stored(c, results)
        print(f"stored {results} results in {time.monotonic() - started:.0f} s", flush=True)
        now_ms = int(time.time() * 1000)
        await bulk(c, [svc.JobRequest(worker_id=sleeper, args=bytes(runner_pb.CommandArgs(args=["3600"])),
                                      priority=p) for p in (data.Priority.HIGH, data.Priority.MEDIUM,
                                                            data.Priority.LOW) for _ in range(6)])
        await bulk(c, [svc.JobRequest(worker_id=hello, args=hello_args(f"later-{i}"),
                                      run_after_time=now_ms + 1_800_000 + i * 60_000) for i in range(25)])
        ready.set()
        deadline = time.monotonic() + load_s
        n = 0
        while time.monotonic() < deadline:
            n += 1
            requests = [svc.JobRequest(worker_id=hello, args=hello_args(f"order-{n}-{i}")) for i in range(100)]
            requests += [svc.JobRequest(worker_id=flaky, args=bytes(runner_pb.CommandArgs(
                args=["-c", f'echo "{{\\"report\\": {n * 10 + i}, \\"rows\\": {i * 37}}}"; exit $(({i} % 5 == 0))']))
            ) for i in range(8 + n % 5)]
            await bulk(c, requests)
            await asyncio.sleep(1.0)


def screenshots(base: str, out: Path, flaky_id: int) -> None:
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise SystemExit("no chromium: apt-get install -y chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.set_default_timeout(120_000)
        # The overview first, while the load surely still runs (on a slow machine the filtered
        # results page below can take long enough for the load to end).
        page.goto(f"{base}/")
        page.wait_for_timeout(4000)  # two polls: the charts are drawn
        page.screenshot(path=str(out / "dashboard-overview.png"), full_page=True)
        page.goto(f"{base}/results?status=SUCCESS&worker={flaky_id}")  # a COMMAND result among 100 000
        page.locator("#results-table tbody tr a").first.click()
        try:
            page.wait_for_selector("#result-status")
        except Exception:
            page.screenshot(path=str(out / "dashboard-failed.png"), full_page=True)
            print(f"no result page at {page.url}:\n{page.inner_text('main')}", flush=True)
            raise
        page.screenshot(path=str(out / "dashboard-result.png"), full_page=True)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=int, default=100_000)
    parser.add_argument("--load-seconds", type=float, default=150.0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jw-dashboard-") as tmp:
        env = {"PLUGINS_RUNNER_DIR": str(ROOT / "plugins"), "WORKER_DEFAULT_CONCURRENCY": "8",
               "WORKER_CHANNELS": "batch,export", "WORKER_CHANNEL_CONCURRENCIES": "3,2", "LOG_LEVEL": "WARN"}
        server = ServerProcess(Path(tmp), env, dashboard=True).start()
        try:
            base = f"http://127.0.0.1:{server.dashboard_port}"
            print(f"dashboard: {base}", flush=True)

            async def scenario() -> None:
                ready = asyncio.Event()
                ids: dict[str, int] = {}
                load = asyncio.create_task(seed_and_load(server.port, args.results, args.load_seconds, ready, ids))
                await ready.wait()
                # The charts count from the moment the overview is first opened: open it now, and
                # take the screenshots while the load still runs.
                await asyncio.to_thread(_touch_overview, base)
                await asyncio.sleep(max(0.0, args.load_seconds - 20))
                await asyncio.to_thread(screenshots, base, args.out, ids["flaky"])
                await load

            asyncio.run(scenario())
        finally:
            server.stop(timeout=120)
    print(f"wrote {args.out / 'dashboard-overview.png'} and {args.out / 'dashboard-result.png'}")


def _touch_overview(base: str) -> None:
    import httpx

    httpx.get(f"{base}/api/overview", timeout=30)


if __name__ == "__main__":
    main()
