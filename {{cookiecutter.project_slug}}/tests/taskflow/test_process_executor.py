"""Sync tasks with executor="process": they run in worker processes, failures come back as the
task's failure, a dead worker fails only its attempt, and the manager's stop ends every worker."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from app.taskflow import TaskFailed, TaskManager, TaskProcessError, TaskTimeout

from . import process_tasks
from .conftest import ADMIN, eventually

WORKER_NAME = "taskflow-process-worker"


def workers() -> list[multiprocessing.process.BaseProcess]:
    return [child for child in multiprocessing.active_children() if child.name == WORKER_NAME]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def pid_in(path: Path) -> int | None:
    text = path.read_text() if path.exists() else ""
    return int(text) if text else None


@pytest.fixture
def manager(make_manager) -> TaskManager:
    manager = make_manager(processes=2)
    process_tasks.register(manager, retries=1)
    return manager


async def test_a_process_task_runs_in_another_process_and_returns_its_result(manager) -> None:
    async with manager.lifespan():
        primes = await manager.result(manager.enqueue(process_tasks.count_primes, (2000,)), timeout=60)
    assert isinstance(primes, process_tasks.Primes)
    assert primes.count == 303
    assert primes.pid != os.getpid()


async def test_an_exception_in_the_worker_fails_the_task_with_its_type_message_and_traceback(manager) -> None:
    async with manager.lifespan():
        task_id = manager.enqueue(process_tasks.refuse, ("no stock",))
        with pytest.raises(TaskFailed) as raised:
            await manager.result(task_id, timeout=60)
    failure = raised.value
    assert (failure.error_type, failure.error_message) == ("ValueError", "refused: no stock")
    # The worker's own traceback is kept, down to the line that raised.
    assert failure.traceback is not None and "raised in the task's worker process" in failure.traceback
    assert 'raise ValueError(f"refused: {reason}")' in failure.traceback


async def test_an_exception_pickle_cannot_rebuild_comes_back_as_task_process_error_naming_it(manager) -> None:
    async with manager.lifespan():
        with pytest.raises(TaskFailed) as raised:
            await manager.result(manager.enqueue(process_tasks.print_report, ("lp0",)), timeout=60)
    assert raised.value.error_type == TaskProcessError.__name__
    assert raised.value.error_message == "task 'print_report' raised OutOfPaper: lp0 tray 2 is empty"


async def test_a_worker_that_dies_fails_its_attempt_with_task_process_error_and_the_retry_runs(
    manager, tmp_path: Path
) -> None:
    async with manager.lifespan():
        task_id = manager.enqueue(process_tasks.die_once, (str(tmp_path / "died"),))
        pid = await manager.result(task_id, timeout=60)
        attempts = await manager.flush() or manager.store.attempts(task_id)
    assert pid != os.getpid()
    assert [(a.status, a.error_type) for a in attempts] == [("failed", TaskProcessError.__name__), ("success", None)]
    assert "died (exit code 3)" in attempts[0].error_message


async def test_a_killed_worker_fails_its_attempt_and_the_retry_runs_in_a_new_worker(manager, tmp_path: Path) -> None:
    started = tmp_path / "started"
    async with manager.lifespan():
        task_id = manager.enqueue(process_tasks.hang_once, (str(started),))
        await eventually(lambda: pid_in(started) is not None, timeout=60)
        first = pid_in(started)
        assert first is not None
        os.kill(first, 9)
        second = await manager.result(task_id, timeout=60)
        attempts = await manager.flush() or manager.store.attempts(task_id)
    assert second != first
    assert [a.error_type for a in attempts] == [TaskProcessError.__name__, None]


async def test_a_process_task_over_its_timeout_fails_and_its_worker_is_killed(make_manager, tmp_path: Path) -> None:
    manager = make_manager(processes=1)
    process_tasks.register(manager)
    manager.task(name="hang_briefly", executor="process", timeout=0.5)(process_tasks.hang)
    started = tmp_path / "started"
    async with manager.lifespan():
        # A worker started first: a timeout also counts the start of a worker when none is idle.
        await manager.result(manager.enqueue(process_tasks.count_primes, (10,)), timeout=60)
        task_id = manager.enqueue(process_tasks.hang, (str(started),))
        with pytest.raises(TaskFailed) as raised:
            await manager.result(task_id, timeout=60)
        pid = pid_in(started)
        assert pid is not None
        await eventually(lambda: not alive(pid))
        # The pool starts a new worker for the next call.
        primes = await manager.result(manager.enqueue(process_tasks.count_primes, (100,)), timeout=60)
    assert raised.value.error_type == TaskTimeout.__name__
    assert primes.count == 25 and primes.pid != pid


async def test_cancelling_a_running_process_task_kills_its_worker(manager, tmp_path: Path) -> None:
    started = tmp_path / "started"
    async with manager.lifespan():
        task_id = manager.enqueue(process_tasks.hang, (str(started),))
        await eventually(lambda: pid_in(started) is not None, timeout=60)
        await manager.cancel(task_id)
        with pytest.raises(TaskFailed) as raised:
            await manager.result(task_id, timeout=60)
        pid = pid_in(started)
        assert pid is not None
        await eventually(lambda: not alive(pid))
    assert raised.value.status == "cancelled"


async def test_the_task_context_is_refused_in_a_worker_with_a_clear_error(manager) -> None:
    async with manager.lifespan():
        with pytest.raises(TaskFailed, match='not available in a task with executor="process"'):
            await manager.result(manager.enqueue(process_tasks.report_progress), timeout=60)


async def test_stopping_the_manager_stops_every_worker(manager) -> None:
    async with manager.lifespan():
        await manager.result(manager.enqueue(process_tasks.count_primes, (50,)), timeout=60)
        assert workers()
    assert workers() == []


def test_an_async_task_cannot_run_in_a_process() -> None:
    manager = TaskManager()

    async def fetch() -> None:
        return None

    with pytest.raises(TypeError, match="for sync"):
        manager.task(executor="process")(fetch)


def test_a_nested_function_or_lambda_cannot_run_in_a_process() -> None:
    manager = TaskManager()

    def nested() -> None:
        return None

    with pytest.raises(TypeError, match="module level"):
        manager.task(executor="process")(nested)
    with pytest.raises(TypeError, match="module level"):
        manager.task(executor="process", name="lambda")(lambda: None)


def test_an_unknown_executor_is_refused_with_the_valid_ones() -> None:
    manager = TaskManager()
    with pytest.raises(ValueError, match="'thread', 'process'"):
        manager.task(executor="fork")(process_tasks.refuse)  # type: ignore[call-overload]


def test_processes_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="processes must be >= 1"):
        TaskManager(processes=0)


async def test_the_registry_shows_which_tasks_run_in_processes(manager, make_app, client_for) -> None:
    async with client_for(make_app(manager), auth=ADMIN) as client:
        registry = {entry["name"]: entry for entry in (await client.get("/tasks/registry")).json()}
        page = await client.get("/tasks/dashboard/registry")
    assert registry["count_primes"]["executor"] == "process"
    assert "sync (processes)" in page.text
