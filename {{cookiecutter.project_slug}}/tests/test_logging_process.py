"""The service's stderr under uvicorn with LOG_FORMAT=json: a task's lines, a take-over, a release.

Every line is JSON (uvicorn's own included); the events an operator must see are there, once.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from .taskflow.procs import end_process, free_port, wait_until

pytestmark = pytest.mark.processes

SERVICE_ROOT = Path(__file__).resolve().parents[1]
AUTH = ("admin", "admin-password")


class Service:
    """The generated service under uvicorn; stderr goes to a file the test reads."""

    def __init__(self, folder: Path, database_url: str) -> None:
        self.port = free_port()
        self.stderr = folder / "stderr.log"
        self.folder = folder
        self.env = {
            **os.environ,
            "PYTHONPATH": str(SERVICE_ROOT),
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": database_url,
            "REDIS_URL": "",
            "ADMIN_PASSWORD": AUTH[1],
            "SECRET_KEY": "logging-test-secret-long-enough-for-the-check",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "TASK_SHUTDOWN_TIMEOUT": "1",
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app", "--port", str(self.port)]
        with self.stderr.open("ab") as output:
            # cwd: the test's folder, so no .env of the service's own is read.
            self.process = subprocess.Popen(
                command, cwd=self.folder, env=self.env, stderr=output, start_new_session=True
            )
        wait_until(self._up, timeout=60, what=f"the service answering /healthz\n{self.text()[-3000:]}")

    def _up(self) -> bool:
        assert self.process is not None and self.process.poll() is None, f"the service exited:\n{self.text()[-3000:]}"
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def task_status(self, task_id: str) -> str | None:
        response = httpx.get(f"{self.url}/tasks/{task_id}", auth=AUTH, timeout=10)
        return response.json()["status"] if response.status_code == 200 else None

    def text(self) -> str:
        return self.stderr.read_text(errors="replace") if self.stderr.exists() else ""

    def entries(self) -> list[dict[str, Any]]:
        lines = [line for line in self.text().splitlines() if line.strip()]
        for line in lines:
            assert line.startswith("{"), f"not a JSON line on stderr: {line!r}"
        return [json.loads(line) for line in lines]

    def having(self, fragment: str) -> list[dict[str, Any]]:
        return [entry for entry in self.entries() if fragment in entry["message"]]


@contextmanager
def service(tmp_path: Path) -> Iterator[Service]:
    running = Service(tmp_path, f"sqlite:///{tmp_path / 'app.db'}")
    try:
        yield running
    finally:
        if running.process is not None:
            end_process(running.process)


def test_json_stderr_has_a_tasks_own_line_a_take_over_after_kill_9_and_a_release_on_sigterm(tmp_path: Path) -> None:
    with service(tmp_path) as app:
        app.start()
        signup = httpx.post(
            f"{app.url}/signup", params={"email": "ops@example.com"}, headers={"X-Request-ID": "ops-1"}, timeout=10
        )
        email_id = signup.json()["task_id"]
        [line] = wait_until(lambda: app.having("sending welcome email to ops@example.com"), timeout=30)
        assert (line["task_id"], line["task_name"], line["attempt"], line["request_id"]) == (
            email_id,
            "send_email",
            1,
            "ops-1",
        )

        report_id = httpx.post(f"{app.url}/reports", params={"seconds": 600}, timeout=10).json()["task_id"]
        wait_until(lambda: app.task_status(report_id) == "running", timeout=30, what="the report running")
        assert app.process is not None
        app.process.send_signal(signal.SIGKILL)
        app.process.wait(timeout=10)

        app.start()  # same host: it sees the dead process's pid is gone and takes over at once
        [take_over] = wait_until(lambda: app.having("took over 1 persisted task(s)"), timeout=30)
        assert (take_over["level"], take_over["logger"]) == ("WARNING", "taskflow.leases")
        wait_until(lambda: app.task_status(report_id) == "running", timeout=30, what="the report running again")

        app.process.send_signal(signal.SIGTERM)
        app.process.wait(timeout=30)  # (uvicorn re-raises the signal once shut down: the code is -15)
    [release] = app.having("released 1 persisted task(s)")
    assert (release["level"], release["logger"]) == ("INFO", "taskflow")
    assert len(app.having("took over")) == 1
    loggers = {entry["logger"] for entry in app.entries()}
    assert {"uvicorn.error", "uvicorn.access"} <= loggers  # uvicorn's own lines are JSON too


# SQL the test runs on the service's database while it serves. A success whose result mentions
# "forbidden" is refused (its texts are then left out); while `outage` holds a row every write to
# the task table fails as a locked or unreachable database fails it (OperationalError).
REFUSE_FORBIDDEN_RESULTS = (
    "CREATE TRIGGER refuse_forbidden BEFORE UPDATE ON taskflow_tasks WHEN NEW.result LIKE '%forbidden%' "
    "BEGIN SELECT RAISE(ABORT, 'the test refuses this result'); END;"
    "CREATE TRIGGER refuse_forbidden_insert BEFORE INSERT ON taskflow_tasks WHEN NEW.result LIKE '%forbidden%' "
    "BEGIN SELECT RAISE(ABORT, 'the test refuses this result'); END;"
)
OUTAGE = "CREATE TABLE outage (since INTEGER);" + "".join(
    f"CREATE TRIGGER outage_{event} BEFORE {event} ON taskflow_tasks WHEN EXISTS (SELECT 1 FROM outage) "
    "BEGIN SELECT json('the database is away'); END;"
    for event in ("INSERT", "UPDATE")
)


def run_sql(database: Path, script: str) -> None:
    connection = sqlite3.connect(database, timeout=30)
    try:
        connection.executescript(script)
        connection.commit()
    finally:
        connection.close()


def test_json_stderr_has_a_refused_write_and_the_retries_of_an_unreachable_database(tmp_path: Path) -> None:
    with service(tmp_path) as app:
        app.start()
        database = tmp_path / "app.db"
        run_sql(database, REFUSE_FORBIDDEN_RESULTS + OUTAGE)

        refused_id = httpx.post(f"{app.url}/signup", params={"email": "forbidden@example.com"}, timeout=10).json()[
            "task_id"
        ]
        wait_until(lambda: app.task_status(refused_id) == "success", timeout=30, what="the refused task recorded")
        [refused] = app.having("refused the texts of")
        assert (refused["level"], refused["logger"]) == ("ERROR", "taskflow.writer")
        assert refused_id in refused["message"]

        run_sql(database, "INSERT INTO outage VALUES (1);")
        kept_id = httpx.post(f"{app.url}/signup", params={"email": "kept@example.com"}, timeout=10).json()["task_id"]
        retries = wait_until(lambda: app.having("cannot write"), timeout=30)
        assert {(entry["level"], entry["logger"]) for entry in retries} == {("ERROR", "taskflow.writer")}
        run_sql(database, "DELETE FROM outage;")
        wait_until(lambda: app.task_status(kept_id) == "success", timeout=60, what="the kept task written")
