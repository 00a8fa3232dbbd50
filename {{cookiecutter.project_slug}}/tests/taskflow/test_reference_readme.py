"""The reference library's README (fastapi-taskflow 0.1.0) run verbatim, only its import line changed.

Its quick start and its three injection patterns are executed as written; the JSON of `/tasks`,
`/tasks/{id}` and `/tasks/metrics` must have the reference's keys with the reference's types
(extra keys are fine).
"""

from __future__ import annotations

import textwrap
import time
import types
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

QUICK_START = textwrap.dedent(
    """
    from fastapi import BackgroundTasks, FastAPI
    from app.taskflow import TaskAdmin, TaskManager

    task_manager = TaskManager(snapshot_db="tasks.db", snapshot_interval=30.0)
    app = FastAPI()

    # auto_install=True patches FastAPI's BackgroundTasks injection so existing
    # route signatures work without any changes.
    TaskAdmin(app, task_manager, auto_install=True)

    @task_manager.task(retries=3, delay=1.0, backoff=2.0)
    def send_email(address: str) -> None:
        ...

    @app.post("/signup")
    def signup(email: str, background_tasks: BackgroundTasks):
        task_id = background_tasks.add_task(send_email, address=email)
        return {"task_id": task_id}
    """
)

INJECTION_PATTERNS = {
    "/pattern-1": textwrap.dedent(
        """
        # Pattern 1: keep the native annotation (requires auto_install=True)
        def route(background_tasks: BackgroundTasks):
            task_id = background_tasks.add_task(my_func, arg)
        """
    ),
    "/pattern-2": textwrap.dedent(
        """
        # Pattern 2: explicit managed type (also requires auto_install=True)
        from app.taskflow import ManagedBackgroundTasks
        def route(background_tasks: ManagedBackgroundTasks):
            task_id = background_tasks.add_task(my_func, arg)
        """
    ),
    "/pattern-3": textwrap.dedent(
        """
        # Pattern 3: explicit Depends — no install() required
        from fastapi import Depends
        def route(tasks=Depends(task_manager.get_tasks)):
            task_id = tasks.add_task(my_func, arg)
        """
    ),
}

NULLABLE_TEXT = (str, type(None))
NULLABLE_NUMBER = (float, int, type(None))
# Keys and JSON types of the reference's task record and aggregated stats.
REFERENCE_TASK: dict[str, type | tuple[type, ...]] = {
    "task_id": str,
    "func_name": str,
    "status": str,
    "created_at": str,
    "start_time": NULLABLE_TEXT,
    "end_time": NULLABLE_TEXT,
    "duration": NULLABLE_NUMBER,
    "retries_used": int,
    "error": NULLABLE_TEXT,
}
REFERENCE_METRICS: dict[str, type | tuple[type, ...]] = {
    "total": int,
    "pending": int,
    "running": int,
    "success": int,
    "failed": int,
    "success_rate": float,
    "avg_duration_seconds": float,
}
STATUSES = {"pending", "running", "success", "failed"}


def assert_reference_shape(payload: dict[str, Any], shape: dict[str, type | tuple[type, ...]]) -> None:
    missing = sorted(set(shape) - set(payload))
    assert not missing, f"keys the reference has are missing: {missing}"
    for key, expected in shape.items():
        # JSON has no bool/int distinction in the reference's counts: a bool here would be a bug.
        assert not isinstance(payload[key], bool), f"{key} is a bool: {payload[key]!r}"
        assert isinstance(payload[key], expected), f"{key} is {payload[key]!r}, the reference gives {expected}"


def assert_reference_task(task: dict[str, Any]) -> None:
    assert_reference_shape(task, REFERENCE_TASK)
    assert UUID(task["task_id"]).version == 4
    assert task["status"] in STATUSES
    for key in ("created_at", "start_time", "end_time"):
        if task[key] is not None:
            datetime.fromisoformat(task[key])


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def reference_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """The quick start, then the three patterns as routes of its app, in a folder of the test's own."""
    monkeypatch.chdir(tmp_path)  # the quick start's snapshot_db="tasks.db" is relative
    module = types.ModuleType("reference_quick_start")
    exec(compile(QUICK_START, "quick_start.py", "exec"), module.__dict__)
    calls: list[str] = []

    @module.task_manager.task()
    def my_func(value: str) -> None:
        calls.append(value)

    module.my_func = my_func
    module.arg = "reference-argument"
    module.calls = calls
    for path, snippet in INJECTION_PATTERNS.items():
        exec(compile(snippet, f"pattern{path}.py", "exec"), module.__dict__)
        module.app.post(path)(module.route)
    yield module
    module.task_manager.store.dispose()


def test_the_quick_start_and_every_injection_pattern_answer_the_reference_shapes(
    reference_app: types.ModuleType, tmp_path: Path
) -> None:
    with TestClient(reference_app.app) as client:
        signup = client.post("/signup", params={"email": "user@example.com"})
        pattern_responses = [client.post(path) for path in INJECTION_PATTERNS]
        wait_until(lambda: client.get("/tasks/metrics").json()["success"] == 4)
        tasks = client.get("/tasks").json()
        details = {task["task_id"]: client.get(f"/tasks/{task['task_id']}").json() for task in tasks}
        metrics = client.get("/tasks/metrics").json()
    assert (tmp_path / "tasks.db").exists()
    assert signup.status_code == 200 and UUID(signup.json()["task_id"]).version == 4
    assert [response.status_code for response in pattern_responses] == [200, 200, 200]
    assert reference_app.calls == ["reference-argument"] * 3
    assert sorted(task["func_name"] for task in tasks) == ["my_func", "my_func", "my_func", "send_email"]
    assert signup.json()["task_id"] in details
    for task in tasks:
        assert_reference_task(task)
        assert task["status"] == "success" and task["error"] is None
    for task_id, detail in details.items():
        assert_reference_task(detail)
        assert detail["task_id"] == task_id
    assert_reference_shape(metrics, REFERENCE_METRICS)
    assert metrics["total"] == 4 and metrics["success"] == 4 and metrics["success_rate"] == 1.0
    assert metrics["avg_duration_seconds"] >= 0.0


def test_metrics_with_no_tasks_are_numbers_as_in_the_reference(reference_app: types.ModuleType) -> None:
    with TestClient(reference_app.app) as client:
        metrics = client.get("/tasks/metrics").json()
    assert_reference_shape(metrics, REFERENCE_METRICS)
    assert metrics["success_rate"] == 0.0 and metrics["avg_duration_seconds"] == 0.0
    assert [metrics[key] for key in ("total", "pending", "running", "success", "failed")] == [0, 0, 0, 0, 0]


def test_metrics_count_every_task_added_before_the_request_whatever_the_cache_holds(
    reference_app: types.ModuleType,
) -> None:
    with TestClient(reference_app.app) as client:
        assert client.get("/tasks/metrics").json()["total"] == 0  # a snapshot is cached now
        first = client.post("/signup", params={"email": "one@example.com"}).json()["task_id"]
        after_one = client.get("/tasks/metrics").json()
        second = client.post("/signup", params={"email": "two@example.com"}).json()["task_id"]
        after_two = client.get("/tasks/metrics").json()
        wait_until(lambda: client.get("/tasks/metrics").json()["success"] == 2)
    assert first != second
    assert after_one["total"] == 1
    assert after_two["total"] == 2
    assert sum(after_two[key] for key in ("pending", "running", "success", "failed")) == 2
