"""The intake on SQLite: a persisted enqueue commits one narrow row, moved to the task table later.

What must hold whatever the timing: the task is committed before add_task returns, it is in
exactly one of the two tables, it runs once, a task that is not typically short is RUNNING in
the task table before it starts, and the rows of a dead instance are recovered.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text

from app.taskflow import ManagedBackgroundTasks, TaskManager, TaskStatus
from app.taskflow.manager import CancelOutcome
from app.taskflow.models import utcnow
from app.taskflow.store import INTAKE_SEQ, Batch, queries
from app.taskflow.store import leases as lease_sql
from app.taskflow.store.writes import INTAKE, TASKS

from .conftest import ADMIN, wait_for_status
from .test_recovery import dead_local_owner

# The intake is SQLite's: PostgreSQL commits persisted rows straight into the task table.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

ELSEWHERE = "elsewhere:7:alive000"  # an instance on another host: alive as far as we can tell


def intake_row(owner: str, name: str = "job", **values: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "name": name,
        "arguments": '{"args": [], "kwargs": {}}',
        "max_attempts": 1,
        "owner": owner,
        "created_at": utcnow(),
        "next_run_at": None,
        **values,
    }


def count(manager: TaskManager, table: Any, task_id: str | None = None) -> int:
    statement = select(func.count()).select_from(table)
    if task_id is not None:
        statement = statement.where(table.c.id == task_id)
    return manager.store.read(lambda c: c.execute(statement).scalar_one())


async def test_a_persisted_task_that_is_not_short_is_running_in_the_task_table_before_it_starts(
    make_manager, database_url
) -> None:
    manager = make_manager()
    engine = create_engine(database_url)
    seen: list[Any] = []

    @manager.task(persist=True)
    def look_at_my_row() -> None:
        # A fresh connection: only what is committed.
        with engine.connect() as connection:
            mine = text("SELECT status FROM taskflow_tasks WHERE id = :id")
            seen.append(connection.execute(mine, {"id": box[0]}).one())
            seen.append(connection.execute(text("SELECT count(*) FROM taskflow_intake")).scalar())
        ran.set()

    box: list[str] = []
    ran = threading.Event()
    try:
        async with manager.lifespan():
            tasks = ManagedBackgroundTasks(manager)
            box.append(tasks.add_task(look_at_my_row))
            await tasks()
            # Nothing here may flush the writer before the task has run (wait_for_status does).
            assert await asyncio.to_thread(ran.wait, 20)
            await wait_for_status(manager, box[0], TaskStatus.SUCCESS)
    finally:
        engine.dispose()
    # A crash while it ran would have been counted: that is what quarantines a task that keeps
    # killing its process (the first run of a name is never taken for short).
    assert seen[0].status == "running"
    assert seen[1] == 0


async def test_a_backlog_of_short_persisted_tasks_all_succeed_and_leave_the_intake_empty(make_manager) -> None:
    manager = make_manager(concurrency=4)
    runs: list[int] = []

    @manager.task(persist=True)
    async def short(n: int) -> None:
        runs.append(n)

    async with manager.lifespan():
        ids: list[str] = []
        for wave in range(5):
            batches = [ManagedBackgroundTasks(manager) for _ in range(100)]
            ids += [tasks.add_task(short, wave * 100 + i) for i, tasks in enumerate(batches)]
            for tasks in batches:
                await tasks()
            await asyncio.sleep(0)
        await manager.wait_idle(timeout=60)
        statuses = manager.store.read(
            lambda c: dict(c.execute(select(TASKS.c.id, TASKS.c.status).where(TASKS.c.id.in_(ids))).all())
        )
    assert sorted(runs) == list(range(500))
    assert set(statuses.values()) == {"success"}
    assert len(statuses) == 500
    assert count(manager, INTAKE) == 0


async def test_a_batch_that_moves_and_claims_reports_every_claim(make_manager) -> None:
    # A claim by moving a row out of the intake and a claim of a written row, in one batch: both
    # tasks must be told their attempt, or they never run and stay RUNNING.
    manager = make_manager()
    store = manager.store
    moved = intake_row(manager.owner)
    store.insert_intake(moved)
    now = utcnow()
    written = {
        **intake_row(manager.owner),
        "status": "pending",
        "persist": True,
        "lease_expires_at": now + timedelta(seconds=30),
        "updated_at": now,
    }
    store.write(lambda c: c.execute(TASKS.insert().values(**{k: v for k, v in written.items() if k in TASKS.c})))
    running = {
        **{column.name: None for column in TASKS.c},
        **moved,
        "status": "running",
        "persist": True,
        "attempt": 1,
        "retries_used": 0,
        "recoveries": 0,
        "cancel_requested": False,
        "started_at": now,
        "updated_at": now,
    }
    batch = Batch(inserts=[running], claims=[written["id"]])
    result = store.apply(batch, owner=manager.owner)
    assert result.claimed == {moved["id"]: 1, written["id"]: 1}
    assert count(manager, INTAKE) == 0


async def test_intake_rows_of_a_dead_instance_on_this_host_are_recovered_and_run(make_manager) -> None:
    manager = make_manager(lease_seconds=30)
    runs: list[str] = []

    @manager.task(persist=True, name="job")
    async def job() -> None:
        runs.append("ran")

    row = intake_row(dead_local_owner())
    manager.store.insert_intake(row)
    async with manager.lifespan():
        # Without waiting out the 30 s lease: the dead pid says enough.
        done = await wait_for_status(manager, row["id"], TaskStatus.SUCCESS, timeout=10)
    assert runs == ["ran"]
    assert (done.recoveries, done.attempt, done.persist) == (0, 1, True)
    assert count(manager, INTAKE) == 0


async def test_another_hosts_intake_rows_are_adopted_only_once_older_than_a_lease(make_manager) -> None:
    manager = make_manager(lease_seconds=30)
    fresh = intake_row(ELSEWHERE)
    stale = intake_row(ELSEWHERE, created_at=utcnow() - timedelta(seconds=31))
    manager.store.insert_intake(fresh)
    manager.store.insert_intake(stale)

    adopted = manager.store.write(
        lambda c: lease_sql.adopt_intake(c, dead=[], stale_before=utcnow() - timedelta(seconds=30), owner=manager.owner)
    )
    assert adopted == 1
    assert count(manager, INTAKE, fresh["id"]) == 1
    assert count(manager, INTAKE, stale["id"]) == 0
    row = manager.store.get(stale["id"])
    # Pending, still under its old owner's name, with no lease: the take-over claims it next.
    assert (row.status, row.owner, row.lease_expires_at, row.persist) == ("pending", ELSEWHERE, None, True)


async def test_a_row_taken_over_before_it_left_the_intake_is_not_written_twice(
    make_manager, caplog: pytest.LogCaptureFixture
) -> None:
    manager = make_manager()
    runs: list[str] = []

    @manager.task(persist=True)
    async def once() -> None:
        runs.append("ran")

    async with manager.lifespan():
        tasks = ManagedBackgroundTasks(manager)
        task_id = tasks.add_task(once)  # recorded, not handed over yet: its row waits in the intake
        # Another instance took us for dead and moved the row meanwhile.
        manager.store.write(
            lambda c: lease_sql.adopt_intake(c, dead=[manager.owner], stale_before=utcnow(), owner="someone:1:else")
        )
        with caplog.at_level(logging.WARNING, logger="taskflow.writer"):
            await manager.flush()
        await tasks()
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
        await manager.wait_idle()
    assert any("taken over by another instance" in r.getMessage() for r in caplog.records)
    assert count(manager, TASKS, task_id) == 1
    assert runs == ["ran"]


async def test_a_cancel_waits_for_another_instance_to_move_the_task_out_of_its_intake(make_manager) -> None:
    here = make_manager()
    there = make_manager(write_behind=0.3)
    runs: list[str] = []

    for manager in (here, there):

        @manager.task(persist=True, name="job")
        async def job() -> None:
            runs.append("ran")

    async with here.lifespan(), there.lifespan():
        tasks = ManagedBackgroundTasks(there)
        task_id = tasks.add_task(job)  # in `there`'s intake, not handed over yet
        assert count(here, INTAKE, task_id) == 1
        outcome = await here.cancel(task_id)
        await tasks()  # `there` hands it over now: it must not run
        await there.wait_idle()
        row = await wait_for_status(here, task_id, TaskStatus.CANCELLED)
    assert outcome is CancelOutcome.CANCELLED
    assert row.status == "cancelled"
    assert runs == []


async def test_a_held_intake_row_knows_its_seq(make_manager) -> None:
    manager = make_manager()
    first, second = intake_row(manager.owner), intake_row(manager.owner)
    manager.store.insert_intake(first)
    manager.store.insert_intake(second)
    assert second[INTAKE_SEQ] == first[INTAKE_SEQ] + 1


async def test_the_api_shows_a_task_still_in_the_intake_as_pending(make_manager, make_app, client_for) -> None:
    manager = make_manager()

    @manager.task(persist=True)
    async def later() -> None:
        return None

    app = make_app(manager)
    async with client_for(app, auth=ADMIN) as client:
        tasks = ManagedBackgroundTasks(manager)
        task_id = tasks.add_task(later)  # not handed over: still in the intake
        assert count(manager, INTAKE, task_id) == 1
        response = await client.get(f"/tasks/{task_id}")
        await tasks()
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
    assert response.status_code == 200
    assert (response.json()["task_id"], response.json()["status"]) == (task_id, "pending")


async def test_a_task_moved_while_it_is_looked_up_is_found(make_manager, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = make_manager()
    row = intake_row(ELSEWHERE)
    manager.store.insert_intake(row)

    def move_after(read: Any) -> Any:
        # Whichever of the two tables is read first, the row moves right after that read.
        def reading(connection: Any, task_id: str) -> Any:
            found = read(connection, task_id)
            if count(manager, INTAKE, task_id):
                manager.store.write(
                    lambda c: lease_sql.adopt_intake(c, dead=[ELSEWHERE], stale_before=utcnow(), owner=manager.owner)
                )
            return found

        return reading

    monkeypatch.setattr(queries, "get_task", move_after(queries.get_task))
    monkeypatch.setattr(queries, "get_intake_task", move_after(queries.get_intake_task))
    found = manager.store.get(row["id"])
    assert count(manager, INTAKE, row["id"]) == 0
    assert found is not None
    assert found.id == row["id"]
