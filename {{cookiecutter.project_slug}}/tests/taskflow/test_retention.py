"""Retention (`keep_finished`): old finished tasks are deleted with their attempts, on both engines.

Rows are planted straight in the tables (through test_recovery's `plant`) with the ages and
states the tests need.
"""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from app.taskflow import ManagedBackgroundTasks, TaskManager, TaskStatus
from app.taskflow import retention as retention_module
from app.taskflow.models import utcnow
from app.taskflow.retention import Retention
from app.taskflow.store.writes import ATTEMPTS, TASKS

from .conftest import eventually, wait_for_status
from .sql import read_sql, write_sql
from .test_recovery import plant as plant_rows

HOUR = timedelta(hours=1)
FINISHED = (TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.INTERRUPTED)


def plant(manager: TaskManager, status: TaskStatus, *, age: timedelta, attempts: int = 0, **values: Any) -> str:
    """A task row created `age` ago (finished then too, if its status is final), with `attempts`
    failed attempt rows; returns its id."""
    at = utcnow() - age
    finished_at = at if status in FINISHED else None
    times = {"created_at": at, "updated_at": at, "started_at": at, "finished_at": finished_at}
    [task_id] = plant_rows(manager, "job", status=status.value, attempt=max(attempts, 1), **times, **values)
    attempt_rows = [
        {"task_id": task_id, "number": n, "status": TaskStatus.FAILED.value, "started_at": at, "finished_at": at}
        for n in range(1, attempts + 1)
    ]
    if attempt_rows:
        write_sql(manager.store, lambda c: c.execute(insert(ATTEMPTS), attempt_rows))
    return task_id


def task_ids(manager: TaskManager) -> set[str]:
    return set(read_sql(manager.store, lambda c: c.execute(select(TASKS.c.id)).scalars().all()))


def attempts_of(manager: TaskManager, task_id: str) -> int:
    statement = select(func.count()).select_from(ATTEMPTS).where(ATTEMPTS.c.task_id == task_id)
    return read_sql(manager.store, lambda c: c.execute(statement).scalar_one())


def test_finished_tasks_older_than_the_cutoff_go_with_their_attempts_and_the_rest_stay(make_manager) -> None:
    manager = make_manager()
    old_finished = {status: plant(manager, status, age=2 * HOUR, attempts=2) for status in FINISHED}
    old_pending = plant(manager, TaskStatus.PENDING, age=2 * HOUR)
    old_running = plant(manager, TaskStatus.RUNNING, age=2 * HOUR, attempts=1)
    recent = plant(manager, TaskStatus.FAILED, age=timedelta(minutes=1), attempts=2)

    deleted = manager.store.delete_finished_before(utcnow() - HOUR, limit=100)

    assert deleted == len(FINISHED)
    assert task_ids(manager) == {old_pending, old_running, recent}
    assert [attempts_of(manager, task_id) for task_id in old_finished.values()] == [0] * len(FINISHED)
    assert (attempts_of(manager, old_running), attempts_of(manager, recent)) == (1, 2)


def test_each_chunk_takes_the_oldest_finished_tasks_first(make_manager) -> None:
    manager = make_manager()
    by_age = [plant(manager, TaskStatus.SUCCESS, age=hours * HOUR) for hours in (5, 4, 3, 2)]

    assert manager.store.delete_finished_before(utcnow() - HOUR, limit=3) == 3

    assert task_ids(manager) == {by_age[-1]}


async def test_a_sweep_goes_on_while_chunks_come_back_full(make_manager, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = make_manager()
    monkeypatch.setattr(retention_module, "CHUNK", 3)
    old = [plant(manager, TaskStatus.SUCCESS, age=2 * HOUR) for _ in range(8)]
    kept = plant(manager, TaskStatus.SUCCESS, age=timedelta(minutes=1))

    deleted = await Retention(manager.store, keep_finished=HOUR.total_seconds()).sweep()

    assert deleted == len(old)
    assert task_ids(manager) == {kept}


async def test_a_running_manager_with_keep_finished_deletes_old_finished_tasks(make_manager) -> None:
    manager = make_manager(keep_finished=HOUR.total_seconds())
    old = plant(manager, TaskStatus.SUCCESS, age=2 * HOUR, attempts=1)
    old_pending = plant(manager, TaskStatus.PENDING, age=2 * HOUR)

    @manager.task(name="job")
    async def job() -> None:
        return None

    async with manager.lifespan():
        # The sweep at start deletes it; the planted pending row is taken over and run meanwhile.
        await eventually(lambda: old not in task_ids(manager))
    assert old not in task_ids(manager)
    assert old_pending in task_ids(manager)
    assert attempts_of(manager, old) == 0


async def test_without_keep_finished_nothing_is_deleted(make_manager) -> None:
    manager = make_manager()
    old = plant(manager, TaskStatus.SUCCESS, age=1000 * HOUR)

    @manager.task(name="job")
    async def job() -> None:
        return None

    async with manager.lifespan():
        # A task run start to end: whatever a start would sweep had its turn by then.
        await wait_for_status(manager, manager.enqueue(job), TaskStatus.SUCCESS)
    assert old in task_ids(manager)
    # Nor would a sweep of its own, however old the row.
    assert await Retention(manager.store, None).sweep() == 0
    assert old in task_ids(manager)


@pytest.mark.parametrize("keep_finished", [0, -60.0])
def test_keep_finished_must_be_positive_or_none(keep_finished: float) -> None:
    with pytest.raises(ValueError, match=r"keep_finished must be > 0 seconds \(or None to keep every task\)"):
        TaskManager(keep_finished=keep_finished)


def test_the_cutoff_compares_as_a_moment_whatever_its_time_zone(make_manager) -> None:
    manager = make_manager()
    plant(manager, TaskStatus.SUCCESS, age=2 * HOUR)
    recent = plant(manager, TaskStatus.SUCCESS, age=timedelta(minutes=1))
    # An hour ago, written five hours ahead of UTC: compared as text, it would take `recent` too.
    cutoff = (utcnow() - HOUR).astimezone(timezone(timedelta(hours=5)))

    assert manager.store.delete_finished_before(cutoff, limit=10) == 1
    assert task_ids(manager) == {recent}


async def test_an_idempotency_key_is_free_again_once_its_task_is_deleted(make_manager) -> None:
    manager = make_manager()
    old = plant(manager, TaskStatus.SUCCESS, age=2 * HOUR, idempotency_key="order-1")

    @manager.task(name="job")
    async def job() -> None:
        return None

    async with manager.lifespan():
        tasks = ManagedBackgroundTasks(manager)
        assert tasks.options(idempotency_key="order-1").add_task(job) == old  # still remembered
        assert manager.store.delete_finished_before(utcnow() - HOUR, limit=10) == 1
        again = ManagedBackgroundTasks(manager)
        fresh = again.options(idempotency_key="order-1").add_task(job)
        await again()
        await wait_for_status(manager, fresh, TaskStatus.SUCCESS)
    assert fresh != old
