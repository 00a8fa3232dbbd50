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
