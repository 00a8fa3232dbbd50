"""ManagedBackgroundTasks through real FastAPI apps: the three injection patterns, sync and async."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from fastapi import BackgroundTasks, Depends

from app.taskflow import ManagedBackgroundTasks, TaskStatus

from .conftest import wait_for_status


async def test_native_annotation_gets_managed_tasks_with_auto_install(make_manager, make_app, client_for) -> None:
    manager = make_manager()
    seen: list[str] = []

    @manager.task()
    async def record(value: str) -> None:
        seen.append(value)

    app = make_app(manager, auto_install=True)

    @app.post("/go")
    async def go(background_tasks: BackgroundTasks) -> dict[str, Any]:
        return {"task_id": background_tasks.add_task(record, "native"), "type": type(background_tasks).__name__}

    async with client_for(app) as client:
        body = (await client.post("/go")).json()
        assert body["type"] == "ManagedBackgroundTasks"
        row = await wait_for_status(manager, body["task_id"], TaskStatus.SUCCESS)
    assert seen == ["native"]
    assert row.name == "record"


async def test_managed_annotation_gets_managed_tasks(make_manager, make_app, client_for) -> None:
    manager = make_manager()
    seen: list[int] = []

    @manager.task()
    def record(value: int) -> None:
        seen.append(value)

    app = make_app(manager, auto_install=True)

    @app.post("/go")
    def go(background_tasks: ManagedBackgroundTasks) -> dict[str, str]:
        return {"task_id": background_tasks.add_task(record, 7)}

    async with client_for(app) as client:
        task_id = (await client.post("/go")).json()["task_id"]
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
    assert seen == [7]


async def test_depends_get_tasks_works_without_install(make_manager, make_app, client_for) -> None:
    manager = make_manager()
    seen: list[str] = []

    @manager.task()
    async def record(value: str) -> None:
        seen.append(value)

    app = make_app(manager, auto_install=False)

    @app.post("/go")
    async def go(tasks: ManagedBackgroundTasks = Depends(manager.get_tasks)) -> dict[str, str]:
        return {"task_id": tasks.add_task(record, value="depends")}

    @app.post("/alias")
    async def alias(tasks: ManagedBackgroundTasks = Depends(manager.background_tasks)) -> dict[str, str]:
        return {"task_id": tasks.add_task(record, value="alias")}

    @app.post("/plain")
    async def plain(background_tasks: BackgroundTasks) -> dict[str, str]:
        return {"type": type(background_tasks).__name__}

    async with client_for(app) as client:
        first = (await client.post("/go")).json()["task_id"]
        second = (await client.post("/alias")).json()["task_id"]
        await wait_for_status(manager, first, TaskStatus.SUCCESS)
        await wait_for_status(manager, second, TaskStatus.SUCCESS)
        # Without install(), FastAPI's own BackgroundTasks is left alone.
        assert (await client.post("/plain")).json()["type"] == "BackgroundTasks"
    assert sorted(seen) == ["alias", "depends"]


async def test_add_task_returns_a_uuid4_string(make_manager, make_app, client_for) -> None:
    import uuid

    manager = make_manager()

    @manager.task()
    def noop() -> None:
        return None

    app = make_app(manager)

    @app.post("/go")
    def go(background_tasks: BackgroundTasks) -> dict[str, str]:
        return {"task_id": background_tasks.add_task(noop)}

    async with client_for(app) as client:
        task_id = (await client.post("/go")).json()["task_id"]
    assert uuid.UUID(task_id).version == 4


async def test_tasks_of_one_request_do_not_wait_for_each_other(make_manager, make_app, client_for) -> None:
    manager = make_manager()
    both_started = threading.Barrier(2, timeout=10)
    gate = asyncio.Event()
    started: list[str] = []

    @manager.task()
    def sync_side() -> None:
        both_started.wait()

    @manager.task()
    async def async_side() -> None:
        started.append("async")
        await asyncio.to_thread(both_started.wait)
        gate.set()

    app = make_app(manager)

    @app.post("/go")
    async def go(background_tasks: BackgroundTasks) -> list[str]:
        return [background_tasks.add_task(sync_side), background_tasks.add_task(async_side)]

    async with client_for(app) as client:
        ids = (await client.post("/go")).json()
        for task_id in ids:
            await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
    assert gate.is_set()


async def test_a_burst_of_short_tasks_runs_on_few_workers_and_none_waits_behind_a_blocked_one(make_manager) -> None:
    manager = make_manager(concurrency=16)
    workers: list[int] = []
    all_ran = asyncio.Event()
    last_ran = asyncio.Event()

    @manager.task(name="quick")
    async def quick(n: int, wait_for_last: bool = False) -> None:
        # Tasks run inline in their worker coroutine: the current task is the worker.
        workers.append(id(asyncio.current_task()))
        if wait_for_last:
            await last_ran.wait()
        if n == 15:
            last_ran.set()
        if len(workers) == 16:
            all_ran.set()

    async def burst(*, first_waits: bool) -> set[int]:
        """Sixteen tasks handed over at once: the workers that ran them."""
        workers.clear()
        all_ran.clear()
        last_ran.clear()
        tasks = ManagedBackgroundTasks(manager)
        ids = [tasks.add_task(quick, n, wait_for_last=first_waits and n == 0) for n in range(16)]
        await tasks()  # the hand-over after one response: sixteen jobs at once
        # Waited for in memory: a flush now would write the rows before their workers claim
        # them, and claims through the database are not what this test is about.
        await asyncio.wait_for(all_ran.wait(), timeout=10)
        for task_id in ids:
            await wait_for_status(manager, task_id, TaskStatus.SUCCESS, timeout=10)
        return set(workers)

    async with manager.lifespan():
        await burst(first_waits=False)  # now "quick" is known to be typically short
        # One woken worker runs them one after another, and one more is woken in case it
        # blocks. (An asyncio.Queue woke a worker per job, each to find the queue empty.)
        assert len(await burst(first_waits=False)) <= 2
        # Short as it usually is, the first one now blocks until the last has run: the others
        # must go on without it, on workers woken one after another.
        assert len(await burst(first_waits=True)) >= 2


async def test_response_is_sent_before_the_task_runs(make_manager, make_app, client_for) -> None:
    manager = make_manager()
    release = asyncio.Event()

    @manager.task()
    async def slow() -> None:
        await release.wait()

    app = make_app(manager)

    @app.post("/go")
    async def go(background_tasks: BackgroundTasks) -> dict[str, str]:
        return {"task_id": background_tasks.add_task(slow)}

    async with client_for(app) as client:
        response = await asyncio.wait_for(client.post("/go"), timeout=10)
        task_id = response.json()["task_id"]
        await wait_for_status(manager, task_id, TaskStatus.RUNNING)
        release.set()
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)


async def test_a_failing_task_does_not_stop_the_next_one(make_manager, make_app, client_for) -> None:
    manager = make_manager()

    @manager.task()
    def broken() -> None:
        raise RuntimeError("boom")

    @manager.task()
    def fine() -> str:
        return "ok"

    app = make_app(manager)

    @app.post("/go")
    def go(background_tasks: BackgroundTasks) -> list[str]:
        return [background_tasks.add_task(broken), background_tasks.add_task(fine)]

    async with client_for(app) as client:
        broken_id, fine_id = (await client.post("/go")).json()
        failed = await wait_for_status(manager, broken_id, TaskStatus.FAILED)
        await wait_for_status(manager, fine_id, TaskStatus.SUCCESS)
    assert failed.error_type == "RuntimeError"
    assert "boom" in failed.error_message


def test_task_ids_are_random_uuid4_strings_in_canonical_form() -> None:
    import uuid

    from app.taskflow.background import new_task_id

    ids = {new_task_id() for _ in range(1000)}
    assert len(ids) == 1000
    for task_id in ids:
        parsed = uuid.UUID(task_id)
        assert str(parsed) == task_id
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
