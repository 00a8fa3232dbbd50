"""`python -m app.worker` (`make worker`) runs the service's tasks with its settings; SIGTERM stops it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[1]

# Records a task while nothing runs: committed ownerless, for a worker (app.tasks declares it).
ENQUEUE = (
    "from app.config import get_settings; from app.schema import prepare; "
    "from app.tasks import configure_task_manager, flaky; settings = get_settings(); prepare(settings); "
    "print(configure_task_manager(settings).enqueue(flaky, kwargs={'failure_rate': 0.0}))"
)


def status_of(database: Path, task_id: str) -> str | None:
    with sqlite3.connect(database) as connection:
        row = connection.execute("SELECT status FROM taskflow_tasks WHERE id = ?", (task_id,)).fetchone()
    return None if row is None else str(row[0])


def test_the_worker_runs_a_recorded_task_and_stops_on_sigterm(tmp_path: Path) -> None:
    database = tmp_path / "worker.db"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "PYTHONPATH": str(SERVICE), "LOG_LEVEL": "INFO"}
    enqueued = subprocess.run(
        [sys.executable, "-c", ENQUEUE], cwd=SERVICE, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert enqueued.returncode == 0, enqueued.stdout + enqueued.stderr
    task_id = enqueued.stdout.strip().splitlines()[-1]
    assert status_of(database, task_id) == "pending"

    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "app.worker"], cwd=SERVICE, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while status_of(database, task_id) != "success":
            assert worker.poll() is None, f"the worker exited:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"the task did not run within 60 s:\n{log_path.read_text()}"
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, log_path.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
    log_text = log_path.read_text()
    assert "running tasks" in log_text and "stopped" in log_text, log_text
