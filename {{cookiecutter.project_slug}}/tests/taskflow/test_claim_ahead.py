"""Claiming ahead: a worker with a backlog of short persisted tasks claims its next jobs while it
runs the current one. Those jobs show RUNNING early, so cancelling one, or shutting down, must
still leave every row telling the truth."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from app.taskflow import CancelOutcome, ManagedBackgroundTasks, TaskManager, TaskStatus

from .conftest import wait_for_status


def gated_step(manager: TaskManager) -> tuple[Callable[..., Any], asyncio.Event, asyncio.Event, list[int]]:
    """A short persisted task; step(n, hold=True) waits for `release` after setting `holding`."""
    holding, release = asyncio.Event(), asyncio.Event()
    ran: list[int] = []

    @manager.task(persist=True, name="step")
    async def step(n: int, hold: bool = False) -> None:
        if hold:
            holding.set()
            await release.wait()
        ran.append(n)

    return step, holding, release, ran


async def learn_that_step_is_short(manager: TaskManager, step: Callable[..., Any]) -> None:
    tasks = ManagedBackgroundTasks(manager)
    ids = [tasks.add_task(step, -n) for n in range(1, 6)]
    await tasks()
    for task_id in ids:
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)


async def hold_one_with_two_behind(
    manager: TaskManager, step: Callable[..., Any], holding: asyncio.Event
) -> tuple[str, list[str]]:
    """Once step is known to be short: step(1) holds, step(2) and step(3) queue behind it.
    Returns when step(1) is running."""
    await learn_that_step_is_short(manager, step)
    tasks = ManagedBackgroundTasks(manager)
    held = tasks.add_task(step, 1, hold=True)
    behind = [tasks.add_task(step, n) for n in (2, 3)]
    # Rows still in SQLite's intake are claimed at once, in memory, when they are short: moved
    # to the task table first, these are claimed through it, which is what is tested here.
    await manager.flush()
    await tasks()
    await holding.wait()
    return held, behind


async def status(manager: TaskManager, task_id: str) -> str:
    row = await asyncio.to_thread(manager.store.get, task_id)
    return row.status


async def test_a_job_claimed_ahead_then_cancelled_is_recorded_cancelled_and_never_runs(make_manager) -> None:
    manager = make_manager(concurrency=1)  # one worker: the backlog queues behind it
    step, holding, release, ran = gated_step(manager)
    async with manager.lifespan():
        first, (second, third) = await hold_one_with_two_behind(manager, step, holding)
        # While the worker runs the first, its next jobs were claimed ahead.
        await wait_for_status(manager, second, TaskStatus.RUNNING)
        assert await manager.cancel(second) == CancelOutcome.CANCELLING
        release.set()
        row = await wait_for_status(manager, second, TaskStatus.CANCELLED)
        await wait_for_status(manager, third, TaskStatus.SUCCESS)
        await wait_for_status(manager, first, TaskStatus.SUCCESS)
    assert 2 not in ran
    assert ran[-2:] == [1, 3]
    assert row.finished_at is not None
    assert row.error_type == "TaskCancelled"


async def test_jobs_claimed_ahead_go_back_to_pending_at_shutdown_and_run_after_a_restart(make_manager) -> None:
    manager = make_manager(concurrency=1, shutdown_timeout=0.2)
    step, holding, _release, _ran = gated_step(manager)
    async with manager.lifespan():
        held, waiting = await hold_one_with_two_behind(manager, step, holding)
        for task_id in waiting:
            await wait_for_status(manager, task_id, TaskStatus.RUNNING)
    # Stopped while `held` still ran and the other two were claimed but not started.
    for task_id in [held, *waiting]:
        assert await status(manager, task_id) == TaskStatus.PENDING

    restarted = make_manager()
    _step, _holding, release, ran = gated_step(restarted)
    release.set()
    async with restarted.lifespan():
        for task_id in [held, *waiting]:
            await wait_for_status(restarted, task_id, TaskStatus.SUCCESS)
    assert sorted(ran) == [1, 2, 3]


async def test_a_task_that_is_not_short_is_never_claimed_ahead(make_manager) -> None:
    manager = make_manager(concurrency=1)
    holding, release = asyncio.Event(), asyncio.Event()

    @manager.task(persist=True)
    async def slow(hold: bool = False) -> None:
        if hold:
            holding.set()
            await release.wait()
        await asyncio.sleep(0.05)  # typical run time above the claim-ahead limit

    async with manager.lifespan():
        tasks = ManagedBackgroundTasks(manager)
        warm = tasks.add_task(slow)
        await tasks()
        await wait_for_status(manager, warm, TaskStatus.SUCCESS)
        tasks = ManagedBackgroundTasks(manager)
        first = tasks.add_task(slow, hold=True)
        queued = [tasks.add_task(slow) for _ in range(3)]
        await tasks()
        await holding.wait()
        await manager.flush()
        statuses = [await status(manager, task_id) for task_id in queued]
        release.set()
        await wait_for_status(manager, first, TaskStatus.SUCCESS)
        for task_id in queued:
            await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
    assert statuses == [TaskStatus.PENDING] * 3


async def test_no_job_waits_behind_a_busy_worker_while_another_worker_is_free(make_manager) -> None:
    manager = make_manager(concurrency=2)
    step, holding, release, _ran = gated_step(manager)
    async with manager.lifespan():
        held, others = await hold_one_with_two_behind(manager, step, holding)
        # One worker holds the first task; the other must run the rest meanwhile, not find
        # them claimed ahead by the busy one.
        for task_id in others:
            await wait_for_status(manager, task_id, TaskStatus.SUCCESS, timeout=10)
        assert await status(manager, held) == TaskStatus.RUNNING
        release.set()
        await wait_for_status(manager, held, TaskStatus.SUCCESS)
