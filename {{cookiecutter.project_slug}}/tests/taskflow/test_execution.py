"""Running tasks: retries, timeouts, RetryAfter, results, progress and captured logs."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import timedelta

from app.taskflow import ManagedBackgroundTasks, RetryAfter, TaskStatus, current_task

from .conftest import wait_for_status


async def enqueue(manager, func, *args, **kwargs) -> str:
    tasks = ManagedBackgroundTasks(manager)
    task_id = tasks.add_task(func, *args, **kwargs)
    await tasks()  # what Starlette does after the response
    return task_id


async def test_a_task_is_retried_with_backoff_until_it_succeeds(make_manager) -> None:
    manager = make_manager()
    calls: list[float] = []

    @manager.task(retries=3, delay=0.05, backoff=2.0)
    def unstable() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError(f"failure {len(calls)}")
        return "done"

    async with manager.lifespan():
        task_id = await enqueue(manager, unstable)
        row = await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
        attempts = await asyncio.to_thread(manager.store.attempts, task_id)
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.05 * 0.9
    assert calls[2] - calls[1] >= 0.10 * 0.9
    assert row.attempt == 3
    assert json.loads(row.result) == "done"
    assert [(a.number, a.status, a.error_type) for a in attempts] == [
        (1, "failed", "ConnectionError"),
        (2, "failed", "ConnectionError"),
        (3, "success", None),
    ]


async def test_a_task_fails_with_its_error_and_traceback_once_retries_run_out(make_manager) -> None:
    manager = make_manager()

    @manager.task(retries=1, delay=0.0)
    async def always_broken(code: int) -> None:
        raise ValueError(f"bad code {code}")

    async with manager.lifespan():
        task_id = await enqueue(manager, always_broken, 42)
        row = await wait_for_status(manager, task_id, TaskStatus.FAILED)
    assert row.attempt == 2
    assert row.error_type == "ValueError"
    assert row.error_message == "bad code 42"
    assert "always_broken" in row.traceback and "ValueError: bad code 42" in row.traceback
    assert row.finished_at is not None


async def test_give_up_on_fails_at_the_first_attempt(make_manager) -> None:
    manager = make_manager()

    @manager.task(retries=5, give_up_on=(PermissionError,))
    def forbidden() -> None:
        raise PermissionError("no")

    async with manager.lifespan():
        row = await wait_for_status(manager, await enqueue(manager, forbidden), TaskStatus.FAILED)
    assert row.attempt == 1


async def test_retry_after_waits_the_delay_the_task_asked_for(make_manager) -> None:
    manager = make_manager()
    calls: list[float] = []

    @manager.task(retries=1, delay=60.0)
    async def rate_limited() -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RetryAfter(0.3, "HTTP 429")

    async with manager.lifespan():
        task_id = await enqueue(manager, rate_limited)
        pending = await wait_for_status(manager, task_id, TaskStatus.PENDING, TaskStatus.SUCCESS)
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
    assert len(calls) == 2
    assert 0.25 <= calls[1] - calls[0] < 30
    if pending.status == TaskStatus.PENDING and pending.next_run_at is not None:
        assert pending.next_run_at - pending.updated_at <= timedelta(seconds=1)


async def test_an_async_task_over_its_timeout_fails_with_task_timeout(make_manager) -> None:
    manager = make_manager()

    @manager.task(timeout=0.2)
    async def sleepy() -> None:
        await asyncio.sleep(30)

    async with manager.lifespan():
        row = await wait_for_status(manager, await enqueue(manager, sleepy), TaskStatus.FAILED)
    assert row.error_type == "TaskTimeout"
    assert "0.2s" in row.error_message


async def test_a_sync_task_over_its_timeout_fails_and_is_asked_to_stop(make_manager) -> None:
    manager = make_manager()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()

    @manager.task(timeout=0.2)
    def busy() -> None:
        context = current_task()
        deadline = time.monotonic() + 30
        while not context.cancelled and time.monotonic() < deadline:
            time.sleep(0.01)
        loop.call_soon_threadsafe(stopped.set)

    async with manager.lifespan():
        row = await wait_for_status(manager, await enqueue(manager, busy), TaskStatus.FAILED)
        await asyncio.wait_for(stopped.wait(), 10)
    assert row.error_type == "TaskTimeout"


async def test_progress_result_and_logs_are_recorded(make_manager) -> None:
    manager = make_manager()
    logger = logging.getLogger("tests.taskflow.reporting")
    logger.setLevel(logging.INFO)

    @manager.task()
    async def report(steps: int) -> dict[str, int]:
        context = current_task()
        for done in range(1, steps + 1):
            context.progress(done, steps, f"step {done}")
            logger.info("did step %d", done)
        return {"steps": steps}

    async with manager.lifespan():
        task_id = await enqueue(manager, report, steps=3)
        row = await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
        attempts = await asyncio.to_thread(manager.store.attempts, task_id)
    assert (row.progress_done, row.progress_total, row.progress_message) == (3, 3, "step 3")
    assert json.loads(row.result) == {"steps": 3}
    logs = json.loads(attempts[0].logs)
    assert [entry["message"] for entry in logs] == ["did step 1", "did step 2", "did step 3"]
    assert all(entry["logger"] == "tests.taskflow.reporting" for entry in logs)


async def test_captured_logs_and_results_are_bounded(make_manager) -> None:
    manager = make_manager()
    logger = logging.getLogger("tests.taskflow.noisy")
    logger.setLevel(logging.INFO)

    @manager.task()
    def noisy() -> str:
        for n in range(1000):
            logger.info("line %d", n)
        return "x" * 200_000

    async with manager.lifespan():
        task_id = await enqueue(manager, noisy)
        row = await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
        attempts = await asyncio.to_thread(manager.store.attempts, task_id)
    logs = json.loads(attempts[0].logs)
    assert len(logs) == 201
    assert logs[-1]["message"] == "800 more log records were not kept"
    result = json.loads(row.result)
    assert result["truncated"] is True
    assert len(row.result) < 70_000


async def test_progress_is_visible_while_the_task_runs(make_manager) -> None:
    manager = make_manager()
    release = asyncio.Event()

    @manager.task(persist=True)
    async def long_job() -> None:
        current_task().progress(1, 4, "a quarter")
        await release.wait()

    async with manager.lifespan():
        task_id = await enqueue(manager, long_job)

        async def progress_written() -> bool:
            await manager.flush()
            row = await asyncio.to_thread(manager.store.get, task_id)
            return row.progress_done == 1 and row.status == TaskStatus.RUNNING

        from .conftest import eventually

        await eventually(progress_written)
        release.set()
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)


async def test_the_decorated_function_stays_directly_callable(make_manager) -> None:
    manager = make_manager()

    @manager.task(retries=2)
    def add(a: int, b: int) -> int:
        return a + b

    @manager.task()
    async def double(x: int) -> int:
        return 2 * x

    assert add(2, 3) == 5
    assert await double(4) == 8


async def test_a_restart_does_not_use_up_a_retry(make_manager) -> None:
    calls: list[int] = []
    started = asyncio.Event()

    def register(manager):
        @manager.task(name="fragile", persist=True, retries=1)
        async def fragile() -> str:
            calls.append(len(calls) + 1)
            if len(calls) == 1:
                started.set()
                await asyncio.sleep(3600)  # still running when the first instance stops
            if len(calls) == 2:
                raise ConnectionError("one real failure")
            return "done"

        return fragile

    first = make_manager(shutdown_timeout=0.1)
    fragile = register(first)
    async with first.lifespan():
        tasks = ManagedBackgroundTasks(first)
        task_id = tasks.add_task(fragile)
        await tasks()
        await asyncio.wait_for(started.wait(), 10)
    second = make_manager()
    register(second)
    async with second.lifespan():
        row = await wait_for_status(second, task_id, TaskStatus.SUCCESS, TaskStatus.FAILED)
    assert row.status == TaskStatus.SUCCESS, row.error_message
    assert (row.attempt, row.retries_used) == (3, 1)
    assert calls == [1, 2, 3]
