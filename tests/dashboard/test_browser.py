"""The dashboard in a real browser against a real server: log in, create a COMMAND worker through
the generated form, enqueue a job through the args form and watch its result arrive in the live
tail, open its detail (an output with a <script> in it shown as text, never run), and delete a
running job and see it end CANCELLED.

No wall-clock assertions: every wait is for a condition, with generous timeouts.
"""

from __future__ import annotations

import re
from typing import Any

from jobworkerp.testing.server import ServerProcess
from tests.dashboard.conftest import TOKEN

WAIT_MS = 60_000
XSS = "<script>window.__pwned = 1</script>"


def _expect() -> Any:
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    return expect


def _create_command_worker(page: Any, base: str, name: str, executable: str) -> str:
    """Through the forms: pick the COMMAND runner, fill the generated settings field; the worker's id."""
    expect = _expect()
    page.goto(f"{base}/workers/new")
    page.select_option("#runner-select", label="COMMAND (COMMAND)")
    page.get_by_role("button", name="Next").click()
    page.fill("input[name=name]", name)
    page.fill("input[name='settings.name']", executable)
    page.get_by_role("button", name="Create worker").click()
    expect(page.locator(".flash.ok")).to_contain_text(f"worker {name} created")
    match = re.search(r"/workers/(\d+)$", page.url)
    assert match, page.url
    return match.group(1)


def _enqueue(page: Any, base: str, worker_id: str, args_lines: str) -> None:
    expect = _expect()
    page.goto(f"{base}/jobs/new?worker={worker_id}")
    page.fill("textarea[name='args.args']", args_lines)
    page.select_option("select[name=priority]", "HIGH")
    page.get_by_role("button", name="Enqueue").click()
    expect(page.locator(".flash.ok")).to_contain_text("enqueued")


def _open_live(context: Any, base: str, worker_id: str) -> Any:
    expect = _expect()
    live = context.new_page()
    live.goto(f"{base}/results/live?worker={worker_id}")
    expect(live.locator("#live-state")).to_have_text("live")
    return live


def test_dashboard_in_a_browser(dashboard_server: ServerProcess, browser: Any) -> None:
    expect = _expect()
    base = f"http://127.0.0.1:{dashboard_server.dashboard_port}"
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)

    # The token is asked once; the session keeps it.
    page.goto(f"{base}/")
    expect(page).to_have_url(re.compile(r"/login"))
    page.fill("input[name=token]", "wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".flash.bad")).to_contain_text("wrong token")
    page.fill("input[name=token]", TOKEN)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("h1")).to_have_text("Overview")

    # A COMMAND worker through the generated settings form, a job through the args form, and its
    # result in the live tail (opened first: the stream has what ends after it opens).
    echo_id = _create_command_worker(page, base, "dash-echo", "echo")
    live = _open_live(context, base, echo_id)
    _enqueue(page, base, echo_id, f"{XSS}\nhello")
    row = live.locator("#live-table tbody tr").first
    expect(row).to_contain_text("SUCCESS")
    expect(row.locator("td.output")).to_contain_text(XSS)

    # Its detail: args and output decoded, the <script> shown as text and never run.
    row.locator("a").first.click()
    expect(live.locator("#result-status")).to_have_text("SUCCESS")
    expect(live.locator("#result-output-0")).to_contain_text(f"{XSS} hello")
    expect(live.locator("#result-args")).to_contain_text("window.__pwned")
    assert live.evaluate("window.__pwned") is None
    assert live.locator("main script").count() == 0
    live.locator("#raw-link").click()
    expect(live.locator("pre.raw").first).to_be_visible()
    assert live.evaluate("window.__pwned") is None

    # A running job deleted from the Jobs page ends CANCELLED.
    sleep_id = _create_command_worker(page, base, "dash-sleep", "sleep")
    sleeper_live = _open_live(context, base, sleep_id)
    _enqueue(page, base, sleep_id, "600")
    running = page.locator("#jobs-table tbody tr[data-job]")
    page.goto(f"{base}/jobs?worker={sleep_id}&state=running")
    for _ in range(WAIT_MS // 500):  # the Jobs page is a snapshot: reload until the job runs
        if running.count():
            break
        page.wait_for_timeout(500)
        page.reload()
    assert running.count(), page.inner_text("main")
    page.once("dialog", lambda dialog: dialog.accept())
    running.first.get_by_role("button", name="delete").click()
    expect(page.locator(".flash.ok")).to_contain_text("deleted")
    expect(sleeper_live.locator("#live-table tbody tr").first).to_contain_text("CANCELLED")

    # The overview's numbers and charts come from /api/overview once the page has polled it.
    page.goto(f"{base}/")
    expect(page.locator("#channels")).to_contain_text("default")
    expect(page.locator("#rate-now")).not_to_have_text("–")
    page.goto(f"{base}/runners")
    expect(page.locator("#runner-1")).to_contain_text("CommandArgs")
    context.close()
