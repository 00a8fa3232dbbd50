"""Enqueue with no running manager (a unit test, a script, a cron job): recorded now, run at start."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from uuid import UUID

import pytest

from app.taskflow import ManagedBackgroundTasks, TaskManager, TaskStatus

from .conftest import eventually, wait_for_status
from .procs import SERVICE_ROOT


async def test_add_task_before_start_returns_a_uuid4_and_the_in_memory_manager_runs_it_once_started(
    caplog: pytest.LogCaptureFixture,
) -> None:
    task_manager = TaskManager()
    seen: list[int] = []

    @task_manager.task()
    def work(n: int) -> None:
        seen.append(n)

    with caplog.at_level(logging.INFO, logger="taskflow"):
        task_id = ManagedBackgroundTasks(task_manager).add_task(work, 42)
    assert UUID(task_id).version == 4
    recorded = task_manager.store.get(task_id)
    assert recorded is not None and recorded.status == TaskStatus.PENDING.value and recorded.name == "work"
    assert any("runs when a manager starts on it" in record.getMessage() for record in caplog.records)
    async with task_manager.lifespan():
        row = await wait_for_status(task_manager, task_id, TaskStatus.SUCCESS.value)
    assert seen == [42]
    assert row.attempt == 1


async def test_a_task_recorded_by_a_manager_that_never_started_runs_on_the_one_that_starts(make_manager) -> None:
    recorder = make_manager()
    runner = make_manager()
    seen: list[tuple[str, int]] = []

    def register(manager: TaskManager) -> object:
        @manager.task(name="greet")
        def greet(name: str, times: int = 1) -> None:
            seen.append((name, times))

        return greet

    greet = register(recorder)
    register(runner)
    first = ManagedBackgroundTasks(recorder).add_task(greet, "ada", times=2)
    second = recorder.enqueue(greet, ("bob",))
    assert not recorder.running
    async with runner.lifespan():
        for task_id in (first, second):
            await wait_for_status(runner, task_id, TaskStatus.SUCCESS.value)
    assert sorted(seen) == [("ada", 2), ("bob", 1)]


async def test_an_idempotency_key_before_start_still_returns_the_first_task(make_manager) -> None:
    manager = make_manager()

    @manager.task()
    def invoice(n: int) -> None:
        return None

    tasks = ManagedBackgroundTasks(manager)
    first = tasks.options(idempotency_key="invoice-7").add_task(invoice, 7)
    again = tasks.options(idempotency_key="invoice-7").add_task(invoice, 7)
    assert again == first


async def test_a_plain_function_before_start_is_refused_with_how_to_fix_it() -> None:
    manager = TaskManager()

    def undeclared() -> None:
        return None

    with pytest.raises(TypeError, match=r"undeclared' is not declared with @task_manager.task.*lifespan"):
        ManagedBackgroundTasks(manager).add_task(undeclared)


async def test_bad_arguments_before_start_are_refused_as_when_running() -> None:
    manager = TaskManager()

    @manager.task()
    def work(n: int) -> None:
        return None

    with pytest.raises(TypeError, match="argument 'n' of task 'work'"):
        ManagedBackgroundTasks(manager).add_task(work, object())


SCRIPT = textwrap.dedent(
    """
    import sys

    from app.taskflow import ManagedBackgroundTasks, TaskManager

    task_manager = TaskManager(database_url=sys.argv[1])


    @task_manager.task(name="write_line")
    def write_line(path: str, text: str) -> None:
        raise AssertionError("the script only enqueues: the web process runs the task")


    print(ManagedBackgroundTasks(task_manager).add_task(write_line, sys.argv[2], "from the script"))
    """
)


async def test_a_script_process_enqueues_into_a_sqlite_file_and_a_started_manager_runs_it(
    tmp_path: Path, sqlite_url: str
) -> None:
    script = tmp_path / "enqueue_line.py"
    script.write_text(SCRIPT)
    output = tmp_path / "line.txt"
    finished = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(script), sqlite_url, str(output)],
        cwd=SERVICE_ROOT,
        env={"PYTHONPATH": str(SERVICE_ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr
    task_id = finished.stdout.strip()
    assert UUID(task_id).version == 4

    web = TaskManager(database_url=sqlite_url, lease_seconds=5.0, poll_interval=0.05)

    @web.task(name="write_line")
    def write_line(path: str, text: str) -> None:
        Path(path).write_text(text)

    try:
        async with web.lifespan():
            await eventually(output.exists, timeout=30)
            row = await wait_for_status(web, task_id, TaskStatus.SUCCESS.value)
    finally:
        web.store.dispose()
    assert output.read_text() == "from the script"
    assert row.owner == web.owner
