"""Waiting for a result: `await task_manager.result(task_id, timeout=...)`.

The result comes back as the task's return type hint says; a failure comes back as TaskFailed;
the waiter works from any instance, is woken by events when they reach it, and otherwise reads
the row at a doubling interval (the read counts below are upper bounds, not timings).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from app.taskflow import (
    EnqueueOptions,
    TaskFailed,
    TaskManager,
    TaskNotFound,
    TaskResultInvalid,
    TaskResultTimeout,
)
from app.taskflow.results import PollSchedule, wait_until_finished

from .conftest import eventually
from .services import REDIS_URL, require_redis


class Invoice(BaseModel):
    number: int
    issued: datetime


class CountingReads:
    """A `read` for wait_until_finished that counts the database reads it makes."""

    def __init__(self, manager: TaskManager, task_id: str) -> None:
        self.manager = manager
        self.task_id = task_id
        self.count = 0

    async def __call__(self) -> Any:
        self.count += 1
        return await asyncio.to_thread(self.manager.store.get, self.task_id)


# A schedule whose polls never come within a test: only an event can end such a wait.
NEVER_POLL = PollSchedule(first=3600.0, most=3600.0)


async def test_result_is_returned_as_the_return_type_hint_says(make_manager) -> None:
    manager = make_manager()

    @manager.task()
    async def issue(number: int) -> Invoice:
        return Invoice(number=number, issued=datetime(2030, 1, 2, tzinfo=UTC))

    @manager.task()
    def totals() -> dict[str, float]:
        return {"net": 10.0, "tax": 2.5}

    async with manager.lifespan():
        invoice = await manager.result(manager.enqueue(issue, (7,)), timeout=30)
        assert invoice == Invoice(number=7, issued=datetime(2030, 1, 2, tzinfo=UTC))
        assert isinstance(invoice.issued, datetime)
        assert await manager.result(manager.enqueue(totals), timeout=30) == {"net": 10.0, "tax": 2.5}


async def test_a_failed_task_raises_task_failed_naming_the_task_and_its_error(make_manager) -> None:
    manager = make_manager()

    @manager.task(retries=1)
    def charge(amount: int) -> int:
        raise ValueError(f"card declined for {amount}")

    async with manager.lifespan():
        task_id = manager.enqueue(charge, (12,))
        with pytest.raises(TaskFailed) as raised:
            await manager.result(task_id, timeout=30)
    failure = raised.value
    assert (failure.task_id, failure.task_name, failure.status) == (task_id, "charge", "failed")
    assert (failure.error_type, failure.error_message) == ("ValueError", "card declined for 12")
    assert "charge" in str(failure) and task_id in str(failure) and "card declined for 12" in str(failure)
    assert failure.traceback is not None and "ValueError" in failure.traceback


async def test_a_cancelled_task_raises_task_failed_with_status_cancelled(make_manager) -> None:
    manager = make_manager()

    @manager.task(persist=True)
    async def later() -> int:
        return 1

    async with manager.lifespan():
        task_id = manager.enqueue(later, options=EnqueueOptions(delay=3600))
        waiting = asyncio.create_task(manager.result(task_id, timeout=30))
        await manager.cancel(task_id)
        with pytest.raises(TaskFailed) as raised:
            await waiting
    assert raised.value.status == "cancelled"


async def test_a_wait_past_its_timeout_raises_a_timeout_error_and_the_task_goes_on(make_manager) -> None:
    manager = make_manager()
    release = asyncio.Event()

    @manager.task()
    async def slow() -> str:
        await release.wait()
        return "done"

    async with manager.lifespan():
        task_id = manager.enqueue(slow)
        with pytest.raises(TaskResultTimeout) as raised:
            await manager.result(task_id, timeout=0.2)
        assert isinstance(raised.value, TimeoutError) and task_id in str(raised.value)
        release.set()
        assert await manager.result(task_id, timeout=30) == "done"


async def test_an_unknown_task_id_raises_task_not_found(make_manager) -> None:
    manager = make_manager(write_behind=0.0)
    async with manager.lifespan():
        with pytest.raises(TaskNotFound, match="no-such-task"):
            await manager.result("no-such-task", timeout=30)


async def test_a_stored_result_that_does_not_match_the_hint_raises_task_result_invalid(make_manager) -> None:
    manager = make_manager()

    @manager.task()
    def count() -> int:
        return "not a number"  # type: ignore[return-value]

    async with manager.lifespan():
        task_id = manager.enqueue(count)
        with pytest.raises(TaskResultInvalid, match="'count'"):
            await manager.result(task_id, timeout=30)


def register_square(manager: TaskManager) -> Any:
    @manager.task(name="square", persist=True)
    def square(n: int) -> int:
        return n * n

    return square


async def test_a_task_run_by_another_instance_is_waited_for_through_the_database(make_manager) -> None:
    # No Redis: the waiting instance hears no event of the other's tasks and reads the row.
    runner, waiter = make_manager(), make_manager()
    register_square(runner)
    square = register_square(waiter)
    async with waiter.lifespan():
        task_id = waiter.enqueue(square, (9,))  # recorded here...
        await waiter.stop()
        async with runner.lifespan():  # ...run there
            assert await waiter.result(task_id, timeout=30) == 81


async def test_a_manager_that_is_not_running_can_wait_for_a_result(make_manager) -> None:
    runner, script = make_manager(), make_manager()
    register_square(runner)
    task_id = script.enqueue(register_square(script), (4,))
    async with runner.lifespan():
        assert await script.result(task_id, timeout=30) == 16


async def test_the_waiter_is_woken_by_the_task_event_of_its_own_instance(make_manager) -> None:
    manager = make_manager()
    release = asyncio.Event()

    @manager.task()
    async def gated() -> int:
        await release.wait()
        return 5

    async with manager.lifespan():
        task_id = manager.enqueue(gated)
        reads = CountingReads(manager, task_id)
        waiting = asyncio.create_task(
            wait_until_finished(
                task_id,
                read=reads,
                settle=manager.flush,
                events=manager.events,
                timeout=None,
                unknown_after=5.0,
                schedule=NEVER_POLL,
            )
        )
        await eventually(lambda: reads.count >= 1)
        release.set()
        row = await asyncio.wait_for(waiting, 30)
    assert row.status == "success"
    # The first read, then the one the finish event asked for (its row was flushed first).
    assert reads.count == 2


async def test_with_redis_the_waiter_is_woken_by_another_instances_event(make_manager) -> None:
    require_redis()
    channel = f"taskflow:test:{uuid.uuid4().hex}"
    runner = make_manager(redis_url=REDIS_URL, redis_channel=channel)
    waiter = make_manager(redis_url=REDIS_URL, redis_channel=channel)
    release = asyncio.Event()

    @runner.task(name="gated")
    async def gated() -> int:
        await release.wait()
        return 5

    async with waiter.lifespan(), runner.lifespan():
        task_id = runner.enqueue(gated)
        await runner.flush()
        reads = CountingReads(waiter, task_id)
        waiting = asyncio.create_task(
            wait_until_finished(
                task_id, read=reads, events=waiter.events, timeout=None, unknown_after=5.0, schedule=NEVER_POLL
            )
        )
        await eventually(lambda: reads.count >= 1)
        release.set()
        row = await asyncio.wait_for(waiting, 30)
        assert row.status == "success"
        # Only the event ended the wait. It can arrive before the runner commits the row: the
        # reads after it chase the commit at RESULT_POLL_FIRST doubling, a handful at most.
        assert reads.count <= 8


async def test_without_events_the_waiter_reads_at_a_doubling_interval(make_manager) -> None:
    script = make_manager()
    task_id = script.enqueue(register_square(script), (2,))  # recorded; no manager runs it
    reads = CountingReads(script, task_id)
    with pytest.raises(TaskResultTimeout):
        await wait_until_finished(task_id, read=reads, events=script.events, timeout=1.0, unknown_after=5.0)
    # Reads at 0, 0.05, 0.15, 0.35, 0.75 and at the deadline, 1.0 s (fewer if the machine is slow);
    # a fixed 10 ms poll would have made a hundred.
    assert reads.count <= 6


def test_the_poll_interval_doubles_up_to_its_cap() -> None:
    delays = PollSchedule(first=0.05, most=2.0).delays()
    assert [next(delays) for _ in range(8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    with pytest.raises(ValueError, match="first"):
        PollSchedule(first=0.0)


async def test_a_negative_timeout_is_refused(make_manager) -> None:
    manager = make_manager()
    with pytest.raises(ValueError, match="timeout must be >= 0"):
        await manager.result("x", timeout=-1)
