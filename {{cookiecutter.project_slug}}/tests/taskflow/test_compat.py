"""The reference library's public API (0.1.0) keeps working with only the import changed."""

from __future__ import annotations

import logging
import time
import types
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.taskflow import TaskManager

# The reference README's quick start, verbatim but for the import line: one copy, in the module
# that checks the reference's shapes.
from .test_reference_readme import QUICK_START


def load_quick_start(tmp_path: Path) -> types.ModuleType:
    module = types.ModuleType("quick_start")
    source = QUICK_START.replace('snapshot_db="tasks.db"', f'snapshot_db="{tmp_path / "tasks.db"}"')
    exec(compile(source, "quick_start.py", "exec"), module.__dict__)
    return module


def wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_reference_quick_start_runs_unchanged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    quick_start = load_quick_start(tmp_path)
    with caplog.at_level(logging.WARNING, logger="taskflow.admin"), TestClient(quick_start.app) as client:
        task_id = client.post("/signup", params={"email": "user@example.com"}).json()["task_id"]
        wait_until(lambda: client.get(f"/tasks/{task_id}").json().get("status") == "success")
        listed = client.get("/tasks")
        metrics = client.get("/tasks/metrics").json()
        assert client.get("/tasks/00000000-0000-4000-8000-000000000000").status_code == 404
    assert (tmp_path / "tasks.db").exists()
    assert [task["task_id"] for task in listed.json()] == [task_id]
    assert listed.headers["X-Total-Count"] == "1"
    task = listed.json()[0]
    for key in (
        "task_id",
        "func_name",
        "status",
        "created_at",
        "start_time",
        "end_time",
        "duration",
        "retries_used",
        "error",
    ):
        assert key in task
    assert task["func_name"] == "send_email"
    for key in ("total", "success", "failed", "running", "pending", "success_rate", "avg_duration_seconds"):
        assert key in metrics
    assert metrics["total"] == 1 and metrics["success"] == 1 and metrics["success_rate"] == 1.0
    # No credentials given: open, as in the reference, and said loudly.
    assert any("NO credentials" in record.getMessage() for record in caplog.records)


def test_list_is_newest_first_and_paginated(tmp_path: Path) -> None:
    quick_start = load_quick_start(tmp_path)
    with TestClient(quick_start.app) as client:
        ids = [client.post("/signup", params={"email": f"u{n}@example.com"}).json()["task_id"] for n in range(5)]
        wait_until(lambda: client.get("/tasks/metrics").json()["success"] == 5)
        page = client.get("/tasks", params={"limit": 2, "offset": 1})
        success = client.get("/tasks", params={"status": "success", "limit": 50}).json()
        bad = client.get("/tasks", params={"status": "exploded"})
    assert [task["task_id"] for task in page.json()] == [ids[3], ids[2]]
    assert page.headers["X-Total-Count"] == "5"
    assert len(success) == 5
    assert bad.status_code == 422


async def test_task_manager_without_arguments_uses_an_in_memory_store() -> None:
    manager = TaskManager()
    from app.taskflow import ManagedBackgroundTasks

    @manager.task()
    def noop(n: int) -> int:
        return n

    async with manager.lifespan():
        tasks = ManagedBackgroundTasks(manager)
        task_id = tasks.add_task(noop, 1)
        await tasks()
        await manager.wait_idle()
        row = manager.store.get(task_id)
    assert row.status == "success"
    assert manager.store.dialect == "sqlite" and manager.config.database_url is None


def test_bad_manager_settings_are_refused_with_the_setting_named() -> None:
    with pytest.raises(ValueError, match=r"concurrency must be >= 0 \(0: enqueue only\)"):
        TaskManager(concurrency=-1)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        TaskManager(threads=0)
    with pytest.raises(ValueError, match="sqlite:/// and postgresql"):
        TaskManager(database_url="mysql://x/y").store  # noqa: B018


@pytest.mark.parametrize("url", ["", "tasks.db", "sqlite:/tasks.db"])
def test_a_database_url_that_is_not_a_url_is_refused_with_the_forms_that_work(url: str) -> None:
    with pytest.raises(ValueError, match=r"is not a database URL; use sqlite:///path/to/tasks.db") as refused:
        TaskManager(database_url=url).store  # noqa: B018
    assert repr(url) in str(refused.value)


def test_a_task_name_used_twice_is_refused() -> None:
    manager = TaskManager()

    @manager.task(name="dup")
    def one() -> None:
        return None

    with pytest.raises(ValueError, match="already used"):

        @manager.task(name="dup")
        def two() -> None:
            return None
