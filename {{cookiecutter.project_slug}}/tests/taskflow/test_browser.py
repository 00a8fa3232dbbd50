"""End to end in headless Chromium: the real service under uvicorn, a person using the dashboard.

Debian's chromium (`apt-get install chromium`) driven by Playwright's Python package, never a
downloaded browser. Without /usr/bin/chromium the test skips with a reason, or fails with CI=true.
Every wait has a generous deadline; the server runs on its own port, database and folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from .procs import SERVICE_ROOT, end_process, free_port, wait_until
from .services import require_service

pytestmark = [pytest.mark.browser, pytest.mark.processes]

CHROMIUM = Path("/usr/bin/chromium")
USER, PASSWORD = "admin", "browser-test-password"


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("TEST_ARTIFACTS_DIR") or SERVICE_ROOT / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Service:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def healthy(self) -> bool:
        assert self.process.poll() is None, f"the service exited; see {self.log}:\n{self.log.read_text()[-3000:]}"
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    """The example service (app.main:create_app) under uvicorn, with a SQLite file of its own."""
    port = free_port()
    log = tmp_path / "uvicorn.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(SERVICE_ROOT),
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        "REDIS_URL": "",
        "ADMIN_USERNAME": USER,
        "ADMIN_PASSWORD": PASSWORD,
        "SECRET_KEY": "browser-test-secret-long-enough-for-the-check",
        "TASK_SHUTDOWN_TIMEOUT": "5",
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    running = Service(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_until(running.healthy, timeout=60, what="the service answers /healthz")
        yield running
    finally:
        end_process(process)


@pytest.fixture
def browser() -> Iterator[Any]:
    require_service("Chromium", CHROMIUM.exists(), "install Debian's package: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield launched
        finally:
            launched.close()


def progress_value(page: Any, task_id: str) -> float | None:
    value = page.evaluate(
        "id => { const bar = document.querySelector(`#task-${id} progress`); return bar ? bar.value : null; }",
        task_id,
    )
    return None if value is None else float(value)


def row_status(page: Any, task_id: str) -> str | None:
    return page.evaluate(
        "id => { const badge = document.querySelector(`#task-${id} .badge`); return badge && badge.textContent; }",
        task_id,
    )


def test_browser_dashboard_follows_tasks_live_and_retries(service: Service, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    # Set before any page script runs, so the stream's opening is never missed.
    context.add_init_script("document.addEventListener('htmx:sseOpen', () => { window.streamOpen = true; });")
    # Anything the Content-Security-Policy blocks (an inline script or style) is recorded here.
    context.add_init_script(
        "window.cspViolations = []; document.addEventListener('securitypolicyviolation',"
        " e => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        # Logging in: an anonymous visit lands on the login form, which leads back to the dashboard.
        page.goto(f"{service.url}/tasks/dashboard")
        assert "/tasks/login" in page.url
        assert page.evaluate("() => getComputedStyle(document.body).display") == "grid"  # its stylesheet loaded
        assert page.evaluate("() => window.cspViolations") == []
        page.fill("#username", USER)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{service.url}/tasks/dashboard")
        page.wait_for_function("() => window.htmx && document.querySelector('#live')")
        page.evaluate("() => { window.notReloaded = true; }")  # gone if the page reloads

        # A report appears, its progress bar moves and it reaches SUCCESS, all without a reload.
        # (Once the stream is open, every change reaches the page through it.)
        wait_until(lambda: page.evaluate("() => window.streamOpen === true"), timeout=30, what="the stream opens")
        report_id = httpx.post(f"{service.url}/reports", params={"seconds": 3}, timeout=10).json()["task_id"]
        page.wait_for_selector(f"#task-{report_id}", timeout=30_000)
        seen: set[float] = set()

        def report_done() -> bool:
            value = progress_value(page, report_id)
            if value is not None:
                seen.add(value)
            return row_status(page, report_id) == "success"

        wait_until(report_done, timeout=60, what="the report's row reaches success")
        assert len(seen) >= 2, f"the progress bar did not move: {seen}"
        assert page.evaluate("() => window.notReloaded === true")

        # A task that always fails: its row turns FAILED, then Retry (confirmed) makes a new task.
        flaky_id = httpx.post(f"{service.url}/flaky", params={"failure_rate": 1.0}, timeout=10).json()["task_id"]
        wait_until(lambda: row_status(page, flaky_id) == "failed", timeout=60, what="the flaky row fails")
        assert page.evaluate("() => window.notReloaded === true")
        dialogs: list[str] = []

        def accept(dialog: Any) -> None:
            dialogs.append(dialog.message)
            dialog.accept()

        page.once("dialog", accept)
        page.click(f"#task-{flaky_id} button.retry")
        page.wait_for_url(f"{service.url}/tasks/dashboard/tasks/*", timeout=30_000)  # the new task's page
        assert dialogs and dialogs[0].startswith("Retry task flaky")
        assert flaky_id not in page.url
        retry_of = page.locator("tr", has_text="Retry of").locator("a")
        assert retry_of.get_attribute("href") == f"/tasks/dashboard/tasks/{flaky_id}"
        page.screenshot(path=str(artifacts_dir() / "dashboard-retried-task.png"), full_page=True)

        assert page.evaluate("() => window.cspViolations") == []
        page.goto(f"{service.url}/tasks/dashboard")
        page.wait_for_selector(f"#task-{report_id}")
        page.screenshot(path=str(artifacts_dir() / "dashboard.png"), full_page=True)
        assert page.evaluate("() => window.cspViolations") == []

        audit = httpx.get(f"{service.url}/tasks/audit", auth=(USER, PASSWORD), timeout=10).json()
        assert [(entry["actor"], entry["action"], entry["task_id"]) for entry in audit] == [(USER, "retry", flaky_id)]

        # Bulk: tick two failed rows, retry them from the bar, confirm on its page, see the counts.
        # (The rows appear through the stream of the dashboard loaded above, and are ticked as
        # they arrive: later live updates must keep the ticks.)
        wait_until(lambda: page.evaluate("() => window.streamOpen === true"), timeout=30, what="the stream opens")
        failing = [
            httpx.post(f"{service.url}/flaky", params={"failure_rate": 1.0}, timeout=10).json()["task_id"]
            for _ in range(2)
        ]
        for task_id in failing:
            wait_until(lambda task_id=task_id: row_status(page, task_id) == "failed", timeout=60, what="a row fails")
            page.check(f"#task-{task_id} input[name=ids]")
        assert page.text_content("#bulk-count") == "2 selected:"
        page.click("#bulk-form button[value=retry]")
        page.wait_for_url(f"{service.url}/tasks/dashboard/bulk/confirm")
        assert page.text_content("h1") == "Retry 2 tasks?"
        page.click("form.bulk-confirm button[type=submit]")
        page.wait_for_url(f"{service.url}/tasks/dashboard/bulk/run")
        assert page.text_content('td.count[data-outcome="retried"]') == "2"
        page.screenshot(path=str(artifacts_dir() / "dashboard-bulk-retried.png"), full_page=True)
        assert page.evaluate("() => window.cspViolations") == []
        audit = httpx.get(f"{service.url}/tasks/audit", auth=(USER, PASSWORD), timeout=10).json()
        assert [entry["action"] for entry in audit].count("bulk-retry") == 1

        # With the dashboard's event stream still open, SIGTERM stops the server promptly.
        service.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        # uvicorn re-raises the signal it handled once its graceful shutdown is done: -SIGTERM.
        assert service.process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 25  # it did not wait for the open stream to time out
    finally:
        context.close()
