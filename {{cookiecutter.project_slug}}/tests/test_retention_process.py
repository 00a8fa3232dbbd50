"""TASK_KEEP_FINISHED_DAYS in a real service process: at start it deletes what finished too long ago."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert

from app.taskflow.models import TaskStatus, new_task_row, utcnow
from app.taskflow.store import open_store
from app.taskflow.store.writes import TASKS

from .taskflow.procs import SERVICE_ROOT, end_process, free_port, wait_until
from .taskflow.sql import write_sql


def finished_task(age: timedelta) -> dict[str, object]:
    at = utcnow() - age
    return new_task_row(
        id=str(uuid.uuid4()),
        name="send_email",
        status=TaskStatus.SUCCESS.value,
        arguments='{"args":[],"kwargs":{}}',
        attempt=1,
        created_at=at,
        started_at=at,
        finished_at=at,
    )


def test_the_service_deletes_tasks_that_finished_before_its_retention_period(tmp_path: Path) -> None:
    database = tmp_path / "app.db"
    store = open_store(f"sqlite:///{database}")
    store.create_tables()
    old, recent = finished_task(timedelta(days=3)), finished_task(timedelta(days=1))
    write_sql(store, lambda c: c.execute(insert(TASKS), [old, recent]))
    store.database.dispose()

    def task_ids() -> set[str]:
        with sqlite3.connect(database) as connection:
            return {task_id for (task_id,) in connection.execute("SELECT id FROM taskflow_tasks")}

    env = {
        **os.environ,
        "PYTHONPATH": str(SERVICE_ROOT),
        "DATABASE_URL": f"sqlite:///{database}",
        "REDIS_URL": "",
        "ADMIN_PASSWORD": "admin-password",
        "SECRET_KEY": "retention-test-secret-long-enough-for-the-check",
        "TASK_KEEP_FINISHED_DAYS": "2",
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(free_port()), "--log-level", "warning"]
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as output:
        # cwd: the test's folder, so no .env of the service's own is read.
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_until(
            lambda: process.poll() is not None or task_ids() == {recent["id"]},
            timeout=60,
            what="the task that finished 3 days ago deleted, the one of yesterday kept",
        )
        assert process.poll() is None, f"the service exited:\n{log.read_text()[-3000:]}"
    finally:
        end_process(process)
    assert task_ids() == {recent["id"]}
