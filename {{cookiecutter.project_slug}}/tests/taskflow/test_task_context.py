"""What a task sees of its caller and its logs: the enqueuing context, and records tagged with the task."""

from __future__ import annotations

import logging
import subprocess
import sys
from contextvars import ContextVar

from app.taskflow import ManagedBackgroundTasks, TaskStatus, current_task

from .conftest import wait_for_status
from .procs import SERVICE_ROOT
from .test_recovery import plant

request_user: ContextVar[str | None] = ContextVar("request_user", default=None)


async def enqueue_as(user: str, manager, func, *args) -> str:
    """Enqueue as a request would: with `user` set in its context, handed over after the response."""
    token = request_user.set(user)
    try:
        tasks = ManagedBackgroundTasks(manager)
        task_id = tasks.add_task(func, *args)
    finally:
        request_user.reset(token)
    await tasks()
    return task_id


async def test_async_and_sync_tasks_see_the_context_of_the_code_that_enqueued_them(make_manager) -> None:
    manager = make_manager()
    seen: dict[str, str | None] = {}

    @manager.task
    async def async_task(key: str) -> None:
        seen[key] = request_user.get()

    @manager.task
    def sync_task(key: str) -> None:
        seen[key] = request_user.get()

    async with manager.lifespan():
        request_user.set("the worker's own value")
        await enqueue_as("alice", manager, async_task, "async")
        await enqueue_as("bob", manager, sync_task, "sync")
        await manager.wait_idle()
    assert seen == {"async": "alice", "sync": "bob"}


async def test_each_attempt_starts_from_the_enqueued_context_not_from_the_last_attempt(make_manager) -> None:
    manager = make_manager()
    seen: list[str | None] = []

    @manager.task(retries=2, delay=0.0)
    async def leaves_a_mark() -> None:
        seen.append(request_user.get())
        request_user.set("changed by the attempt")
        if len(seen) < 3:
            raise ConnectionError("try again")

    async with manager.lifespan():
        task_id = await enqueue_as("carol", manager, leaves_a_mark)
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
    assert seen == ["carol", "carol", "carol"]


async def test_a_task_recovered_after_a_restart_runs_with_an_empty_context(make_manager) -> None:
    manager = make_manager()
    seen: list[str | None] = []

    @manager.task(persist=True, name="recovered")
    async def recovered() -> None:
        seen.append(request_user.get())

    task_id = plant(manager, "recovered")[0]
    request_user.set("the starting code's value")
    async with manager.lifespan():
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
    assert seen == [None]


async def test_records_logged_inside_a_task_carry_its_id_name_and_attempt(make_manager) -> None:
    manager = make_manager()
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    task_logger = logging.getLogger("tests.task_context")
    task_logger.setLevel(logging.INFO)
    handler = Keep()
    task_logger.addHandler(handler)

    @manager.task(retries=1, delay=0.0)
    def chatty() -> None:
        task_logger.info("working")
        if current_task().attempt == 1:
            raise ConnectionError("once")

    try:
        async with manager.lifespan():
            task_id = await enqueue_as("dave", manager, chatty)
            await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
            task_logger.info("outside any task")
    finally:
        task_logger.removeHandler(handler)
    inside = [(r.task_id, r.task_name, r.attempt) for r in records if r.getMessage() == "working"]
    assert inside == [(task_id, "chatty", 1), (task_id, "chatty", 2)]
    outside = next(r for r in records if r.getMessage() == "outside any task")
    assert not hasattr(outside, "task_id")


def test_capturing_task_logs_leaves_pythons_last_resort_output_and_basic_config_working() -> None:
    # A fresh interpreter: the capture installs process-wide, and this process's logging is pytest's.
    script = """
import logging
from app.taskflow.context import install_log_capture
install_log_capture()
logging.getLogger("probe").warning("last resort still prints")
logging.basicConfig(format="configured: %(message)s")
logging.getLogger("probe").warning("basicConfig took effect")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=SERVICE_ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert "last resort still prints" in done.stderr
    assert "configured: basicConfig took effect" in done.stderr
