"""Enqueue-only managers (concurrency 0), worker runs and the batch claim of ownerless rows."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from app.taskflow import TaskManager, current_task
from app.taskflow.models import TaskStatus, new_task_row, utcnow
from app.taskflow.store import Store
from app.taskflow.worker import run_worker

from .conftest import ManagerFactory, eventually, wait_for_status


def declare(manager: TaskManager, ran: list[str]) -> None:
    @manager.task(name="note")
    async def note(value: str) -> None:
        ran.append(value)


async def test_an_enqueue_only_manager_commits_tasks_ownerless_and_a_worker_runs_them(
    make_manager: ManagerFactory,
) -> None:
    ran_here: list[str] = []
    ran_by_worker: list[str] = []
    web = make_manager(concurrency=0)
    declare(web, ran_here)
    await web.start()
    # persist=False, yet committed at once and persisted: only a worker can run it, and only
    # from the table.
    task_id = web.enqueue(web.registry.get("note").func, kwargs={"value": "hello"})  # type: ignore[union-attr]
    row = await asyncio.to_thread(web.store.get, task_id)
    assert (row.status, row.owner, row.persist) == (TaskStatus.PENDING.value, None, True)

    worker = make_manager(concurrency=2)
    declare(worker, ran_by_worker)
    await worker.start()
    row = await wait_for_status(worker, task_id, TaskStatus.SUCCESS.value)
    assert ran_by_worker == ["hello"] and ran_here == []
    assert row.owner == worker.owner and row.attempt == 1


async def test_a_task_claimed_with_its_batch_is_retried_through_a_claim_of_its_own(
    make_manager: ManagerFactory,
) -> None:
    attempts: list[int] = []
    manager = make_manager(concurrency=2)

    @manager.task(name="flaky", retries=2, delay=0.0)
    async def flaky() -> str:
        attempts.append(current_task().attempt)
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return "ok"

    task_id = manager.enqueue(flaky)  # not running: ownerless, claimed with a batch at the start
    await manager.start()
    row = await wait_for_status(manager, task_id, TaskStatus.SUCCESS.value, TaskStatus.FAILED.value)
    assert (row.status, row.attempt, row.retries_used, attempts) == (TaskStatus.SUCCESS.value, 3, 2, [1, 2, 3])
    assert [attempt.status for attempt in await asyncio.to_thread(manager.store.attempts, task_id)] == [
        "failed",
        "failed",
        "success",
    ]


async def test_an_enqueue_only_manager_refuses_to_start_on_the_in_memory_store() -> None:
    manager = TaskManager(concurrency=0)
    with pytest.raises(ValueError, match=r"concurrency=0 \(enqueue only\) needs a database .* set database_url"):
        await manager.start()
    assert not manager.running


def test_a_negative_concurrency_is_refused_with_its_meaning() -> None:
    with pytest.raises(ValueError, match=r"concurrency must be >= 0 \(0: enqueue only\), got -1"):
        TaskManager(concurrency=-1)


async def test_a_worker_refuses_an_enqueue_only_manager(sqlite_url: str) -> None:
    manager = TaskManager(database_url=sqlite_url, concurrency=0)
    with pytest.raises(ValueError, match="a worker with concurrency 0 would run no task"):
        await run_worker(manager, stop=asyncio.Event())
    manager.store.dispose()


async def test_run_worker_runs_tasks_recorded_while_no_manager_ran_until_stopped(
    make_manager: ManagerFactory,
) -> None:
    ran: list[str] = []
    manager = make_manager(concurrency=4)
    declare(manager, ran)
    func = manager.registry.get("note").func  # type: ignore[union-attr]
    ids = [manager.enqueue(func, kwargs={"value": str(n)}) for n in range(50)]  # not running: ownerless
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(manager, stop=stop))
    await eventually(lambda: len(ran) == 50)
    stop.set()
    await asyncio.wait_for(worker, 30)
    assert not manager.running
    rows = [await asyncio.to_thread(manager.store.get, task_id) for task_id in ids]
    assert {row.status for row in rows} == {TaskStatus.SUCCESS.value}
    assert sorted(ran, key=int) == [str(n) for n in range(50)]


def plant_ownerless(store: Store, count: int, *, name: str = "note", delay: float | None = None) -> list[str]:
    now = utcnow()
    due = None if delay is None else now + timedelta(seconds=delay)
    rows = [
        new_task_row(id=str(uuid.uuid4()), name=name, persist=True, created_at=now, next_run_at=due)
        for _ in range(count)
    ]
    for row in rows:
        store.enqueue(row)  # no writer: committed at once, ownerless (route 1)
    return [str(row["id"]) for row in rows]


async def test_claim_ownerless_takes_due_rows_in_batches_into_running_and_never_one_twice(
    make_manager: ManagerFactory,
) -> None:
    store = make_manager().store
    due_ids = plant_ownerless(store, 7)
    later = plant_ownerless(store, 2, delay=3600)
    other = plant_ownerless(store, 2, name="elsewhere")
    until = utcnow() + timedelta(seconds=30)

    first = store.claim_ownerless("a", until=until, limit=5, names=["note"]).rows
    second = store.claim_ownerless("b", until=until, limit=5, names=["note"]).rows
    third = store.claim_ownerless("b", until=until, limit=5, names=["note"]).rows

    assert len(first) == 5 and len(second) == 2 and third == []
    assert {row.id for row in first} | {row.id for row in second} == set(due_ids)
    assert all(row.attempt == 1 for row in first + second)
    for row in [store.get(task_id) for task_id in due_ids]:
        assert row.status == TaskStatus.RUNNING.value and row.owner in ("a", "b") and row.started_at is not None
    # Not due yet, or of a task this instance does not run: left for later, or for another.
    assert {store.get(task_id).owner for task_id in later + other} == {None}
    assert store.released_ids(limit=10, names=["note"], due=utcnow()) == []
    assert set(store.released_ids(limit=10, names=["note"])) == set(later)
