"""Control: cancel pending and running tasks, retry failed ones as new linked tasks."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.taskflow import CancelOutcome, ManagedBackgroundTasks, TaskNotFound, TaskNotRetryable, TaskStatus, current_task

from .conftest import wait_for_status


async def test_a_cancelled_pending_task_never_runs(make_manager) -> None:
    manager = make_manager()
    runs: list[str] = []

    @manager.task(persist=True)
    def later() -> None:
        runs.append("ran")

    async with manager.lifespan():
        tasks = ManagedBackgroundTasks(manager)
        task_id = tasks.options(delay=0.3).add_task(later)
        await tasks()
        assert await manager.cancel(task_id) == CancelOutcome.CANCELLED
        row = await wait_for_status(manager, task_id, TaskStatus.CANCELLED)
        await asyncio.sleep(0.6)  # past its due time: it must still not run
        await manager.wait_idle()
    assert runs == []
    assert row.finished_at is not None


async def test_a_cancelled_unpersisted_pending_task_never_runs(make_manager) -> None:
    manager = make_manager()
    runs: list[str] = []

    @manager.task()
    def later() -> None:
        runs.append("ran")

    async with manager.lifespan():
        tasks = ManagedBackgroundTasks(manager)
        # The delay leaves the cancel time to land first on a loaded machine; then the test waits
        # past the moment the task was due, to see that it never starts.
        task_id = tasks.options(delay=2.0).add_task(later)
        await tasks()
        assert await manager.cancel(task_id) == CancelOutcome.CANCELLED
        await asyncio.sleep(2.5)
        await manager.wait_idle()
        row = await asyncio.to_thread(manager.store.get, task_id)
    assert runs == []
    assert row.status == TaskStatus.CANCELLED


async def test_a_running_async_task_is_cancelled_at_once(make_manager) -> None:
    manager = make_manager()
    started = asyncio.Event()

    @manager.task()
    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    async with manager.lifespan():
        tasks = ManagedBackgroundTasks(manager)
        task_id = tasks.add_task(forever)
        await tasks()
        await asyncio.wait_for(started.wait(), 10)
        assert await manager.cancel(task_id) == CancelOutcome.CANCELLING
        row = await wait_for_status(manager, task_id, TaskStatus.CANCELLED)
    assert row.error_type == "TaskCancelled"


async def test_a_running_sync_task_stops_at_its_next_cancel_check(make_manager) -> None:
    manager = make_manager()
    loop = asyncio.get_running_loop()
    started = asyncio.Event()

    @manager.task(retries=3)
    def cooperative() -> None:
        context = current_task()
        loop.call_soon_threadsafe(started.set)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            context.check_cancelled()
            time.sleep(0.01)

    async with manager.lifespan():
        tasks = ManagedBackgroundTasks(manager)
        task_id = tasks.add_task(cooperative)
        await tasks()
        await asyncio.wait_for(started.wait(), 10)
        assert await manager.cancel(task_id) == CancelOutcome.CANCELLING
        row = await wait_for_status(manager, task_id, TaskStatus.CANCELLED)
    assert row.attempt == 1  # cancelling is not a failure to retry


async def test_cancel_of_an_unknown_or_finished_task_says_so(make_manager) -> None:
    manager = make_manager()

    @manager.task()
    def quick() -> None:
        return None

    async with manager.lifespan():
        tasks = ManagedBackgroundTasks(manager)
        task_id = tasks.add_task(quick)
        await tasks()
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
        assert await manager.cancel(task_id) == CancelOutcome.ALREADY_FINISHED
        assert await manager.cancel("00000000-0000-4000-8000-000000000000") == CancelOutcome.NOT_FOUND


async def test_retry_of_a_failed_task_makes_a_new_linked_task_and_keeps_the_original(make_manager) -> None:
    manager = make_manager()
    outcomes = iter([ValueError("first time"), None])

    @manager.task(persist=True)
    def sometimes(n: int) -> int:
        error = next(outcomes)
        if error:
            raise error
        return n

    async with manager.lifespan():
        tasks = ManagedBackgroundTasks(manager)
        original = tasks.add_task(sometimes, 5)
        await tasks()
        await wait_for_status(manager, original, TaskStatus.FAILED)
        new_id = await manager.retry(original)
        retried = await wait_for_status(manager, new_id, TaskStatus.SUCCESS)
        kept = await asyncio.to_thread(manager.store.get, original)
    assert new_id != original
    assert retried.retry_of == original
    assert retried.result == "5"
    assert kept.status == TaskStatus.FAILED and kept.error_message == "first time"


async def test_retry_refuses_unknown_and_unfinished_tasks(make_manager) -> None:
    manager = make_manager()
    release = asyncio.Event()

    @manager.task()
    async def waiting() -> None:
        await release.wait()

    async with manager.lifespan():
        with pytest.raises(TaskNotFound):
            await manager.retry("00000000-0000-4000-8000-000000000000")
        tasks = ManagedBackgroundTasks(manager)
        task_id = tasks.add_task(waiting)
        await tasks()
        await wait_for_status(manager, task_id, TaskStatus.RUNNING)
        with pytest.raises(TaskNotRetryable, match="only failed, cancelled or interrupted"):
            await manager.retry(task_id)
        release.set()
