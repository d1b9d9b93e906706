"""The dashboard of a `grpc-front` in Scalable mode, with the jobs run by a separate `worker`
process: it uses only the public API, so it works against any front. Over plain HTTP (the
browser flow is test_browser.py's): a worker created and a job enqueued through the forms, the
job's result found in the results list and its detail page, and the overview's channel counts."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from jobworkerp.testing.server import ServerProcess
from tests.dashboard.test_http import _csrf
from tests.scalable.services import scalable_env

WAIT_S = 60.0


def test_a_grpc_front_serves_the_dashboard_for_the_whole_system(tmp_path: Path) -> None:
    with scalable_env() as env:
        worker = ServerProcess(tmp_path, env, mode="worker", name="worker").start()
        front = ServerProcess(tmp_path, env, mode="grpc-front", name="front", dashboard=True).start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{front.dashboard_port}", timeout=30.0) as client:
                csrf = _csrf(client.get("/workers/new?runner=1").text)
                made = client.post("/workers", data={"csrf": csrf, "runner": "1", "name": "scalable-echo",
                                                     "settings.name": "echo", "store_success": "true",
                                                     "response_type": "NO_RESULT", "queue_type": "NORMAL",
                                                     "retry_type": "NONE"})
                assert made.status_code == 303, made.text
                worker_id = made.headers["location"].rsplit("/", 1)[1]
                queued = client.post("/jobs", data={"csrf": csrf, "worker": worker_id, "priority": "LOW",
                                                    "args.args": "from the scalable dashboard"})
                assert queued.status_code == 303, queued.text
                deadline = time.monotonic() + WAIT_S
                while "from the scalable dashboard" not in (page := client.get(f"/results?worker={worker_id}")).text:
                    assert time.monotonic() < deadline, page.text
                    time.sleep(0.2)
                result_id = re.search(r'href="/results/(\d+)"', page.text)
                assert result_id, page.text
                detail = client.get(f"/results/{result_id.group(1)}")
                assert "SUCCESS" in detail.text and "from the scalable dashboard" in detail.text
                overview = client.get("/api/overview").json()
                assert any(c["channel"] == "default" and c["workers"] == 1 for c in overview["channels"])
        finally:
            assert front.stop() == 0, front.log()
            assert worker.stop() == 0, worker.log()
