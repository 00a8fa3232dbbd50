"""A backlog of short tasks: the event loop keeps its turns while workers run them.

Short async tasks never suspend, so a worker with a queue behind it would run them all in one
go: nothing else on the loop (requests, the writer, heartbeats) would run until the backlog was
gone.
"""

from __future__ import annotations

import asyncio

import pytest

from app.taskflow import ManagedBackgroundTasks
from app.taskflow.runner import YIELD_EVERY

from .conftest import eventually


@pytest.mark.parametrize("workers", [1, 8])
async def test_a_backlog_of_short_tasks_lets_the_event_loop_run_every_few_of_them(make_manager, workers: int) -> None:
    # With several workers, each woken for the backlog, it is still a few jobs per loop turn in
    # all, not a few per worker.
    manager = make_manager(concurrency=workers)
    ran: list[int] = []

    @manager.task(name="tick")
    async def tick(n: int) -> None:
        ran.append(n)

    backlog = 20 * YIELD_EVERY
    # How many jobs had run each time another coroutine on the loop got a turn.
    seen: list[int] = []
    async with manager.lifespan():
        tasks = ManagedBackgroundTasks(manager)
        for n in range(backlog):
            tasks.add_task(tick, n)

        async def watch() -> None:
            while len(ran) < backlog:
                seen.append(len(ran))
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        await tasks()
        await asyncio.wait_for(watcher, timeout=60)
        await manager.wait_idle()
    assert sorted(ran) == list(range(backlog))
    longest_run_without_a_turn = max(b - a for a, b in zip([0, *seen], [*seen, backlog], strict=True))
    assert longest_run_without_a_turn <= YIELD_EVERY


async def test_a_job_that_blocks_right_after_its_worker_yielded_holds_back_none_of_the_queue(make_manager) -> None:
    """While a worker yields mid-backlog, a worker that finishes its own job goes back to sleep
    instead of taking from the queue. If the yielding worker's next job, one it claimed ahead,
    then blocks, the sleeper must be woken again to take the rest of the queue."""
    manager = make_manager(concurrency=2)
    release_first, release_blocked = asyncio.Event(), asyncio.Event()
    ran: list[int] = []
    state: dict[str, object] = {"armed": False, "blocked": False, "holder": None}

    @manager.task(name="step")
    async def step(n: int, hold: bool = False) -> None:
        # Tasks run inline in their worker coroutine: the current task is the worker.
        worker = asyncio.current_task()
        if hold:  # keeps one worker busy, so the other claims jobs ahead while it runs the backlog
            state["holder"] = worker
            await release_first.wait()
            # Released while the other worker yields: this worker now goes back to sleep.
            state["armed"] = True
        elif state["armed"] and not state["blocked"] and worker is not state["holder"]:
            state["blocked"] = True  # the other worker's first job after that, one claimed ahead, blocks
            await release_blocked.wait()
        ran.append(n)

    learned, queued = range(-5, 0), range(1, 10 * YIELD_EVERY)  # and step 0, which holds
    async with manager.lifespan():
        learn = ManagedBackgroundTasks(manager)
        for n in learned:
            learn.add_task(step, n)
        await learn()
        await manager.wait_idle()  # step is now known to be short: jobs are claimed ahead

        first = ManagedBackgroundTasks(manager)
        first.add_task(step, 0, hold=True)
        await first()
        backlog = ManagedBackgroundTasks(manager)
        for n in queued:
            backlog.add_task(step, n)

        async def release_when_the_other_worker_yields() -> None:
            # Short jobs never suspend: this coroutine's next turn, with some of the backlog
            # run, is the other worker yielding the loop mid-backlog.
            await eventually(lambda: len(ran) > len(learned), timeout=30, interval=0)
            release_first.set()

        releaser = asyncio.create_task(release_when_the_other_worker_yields())
        await backlog()
        try:
            await releaser
            # Every job but the blocked one finishes while it blocks.
            await eventually(lambda: len(ran) == len(learned) + 1 + len(queued) - 1, timeout=20)
            assert state["blocked"]
        finally:
            release_blocked.set()
        await manager.wait_idle()
    assert sorted(ran) == [*learned, 0, *queued]
