"""The intake on SQLite: a persisted enqueue commits into a file of its process's own, moved later.

What must hold whatever the timing: the task is committed before add_task returns, it runs
once, a task that is not typically short is RUNNING in the task table before it starts, the
rows of a dead process are recovered (once), and a live process's file is left alone.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text

from app.taskflow import ManagedBackgroundTasks, TaskManager, TaskStatus
from app.taskflow.manager import CancelOutcome
from app.taskflow.models import new_task_row, utcnow
from app.taskflow.store import Batch
from app.taskflow.store import intake as intake_module
from app.taskflow.store.intake import IntakeFile
from app.taskflow.store.sqlite import SQLiteDatabase
from app.taskflow.store.writes import TASKS

from .conftest import ADMIN, wait_for_status
from .sql import read_sql, write_sql
from .test_recovery import dead_local_owner

# The intake is SQLite's: PostgreSQL commits persisted rows straight into the task table.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def intake_row(owner: str, name: str = "job", **values: Any) -> dict[str, Any]:
    """A new persisted row of `owner`, as its enqueue builds it."""
    return new_task_row(id=str(uuid.uuid4()), name=name, persist=True, owner=owner, **values)


def count(manager: TaskManager, table: Any, task_id: str | None = None) -> int:
    statement = select(func.count()).select_from(table)
    if task_id is not None:
        statement = statement.where(table.c.id == task_id)
    return read_sql(manager.store, lambda c: c.execute(statement).scalar_one())


def sqlite_of(manager: TaskManager) -> SQLiteDatabase:
    database = manager.store.database
    assert isinstance(database, SQLiteDatabase)
    return database


def intake_of(manager: TaskManager) -> IntakeFile:
    intake = sqlite_of(manager).intake
    assert intake is not None
    return intake


def folder_of(manager: TaskManager) -> Path:
    return sqlite_of(manager).intake_folder


def other_process_file(manager: TaskManager, owner: str, *rows: dict[str, Any]) -> IntakeFile:
    """Another process's intake file, open (that process alive), holding `rows`."""
    other = sqlite_of(manager).intake_file(owner)
    other.open()
    for row in rows:
        other.add(row)
    return other


def die(file: IntakeFile) -> None:
    """What recovery finds of a process gone: its lock free, its rows still in the file. (A real
    kill -9 is test_processes.py's `test_kill_9_while_tasks_are_only_in_the_intake_file_...`.)"""
    # Closing keeps a file whose rows were never moved, and lets go of its lock.
    assert file.close() > 0
    assert file.path.exists()


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
        left = intake_of(manager).rows_left()
        statuses = read_sql(
            manager.store,
            lambda c: dict(c.execute(select(TASKS.c.id, TASKS.c.status).where(TASKS.c.id.in_(ids))).all()),
        )
    assert sorted(runs) == list(range(500))
    assert set(statuses.values()) == {"success"}
    assert len(statuses) == 500
    assert left == 0


async def test_a_batch_that_moves_and_claims_reports_every_claim(make_manager) -> None:
    # A claim by moving a row out of the intake and a claim of a written row, in one batch: both
    # tasks must be told their attempt, or they never run and stay RUNNING.
    manager = make_manager()
    store = manager.store
    store.open(manager.owner, stale_after=30)
    moved = intake_row(manager.owner)
    assert store.database.record_durably(moved)
    now = utcnow()
    written = intake_row(manager.owner, lease_expires_at=now + timedelta(seconds=30))
    write_sql(store, lambda c: c.execute(TASKS.insert().values(**written)))
    running = {**moved, "status": "running", "attempt": 1, "started_at": now, "updated_at": now}
    batch = Batch(inserts=[running], claims=[written["id"]])
    result = store.apply(batch, owner=manager.owner)
    assert result.claimed == {moved["id"]: 1, written["id"]: 1}
    assert intake_of(manager).rows_left() == 0


async def test_a_dead_processes_intake_rows_are_recovered_and_run_and_its_file_deleted(make_manager) -> None:
    manager = make_manager(lease_seconds=30)
    runs: list[str] = []

    @manager.task(persist=True, name="job")
    async def job() -> None:
        runs.append("ran")

    owner = dead_local_owner()
    row = intake_row(owner)
    dead = other_process_file(manager, owner, row)
    die(dead)
    async with manager.lifespan():
        # Without waiting out the 30 s lease: the file's lock says enough.
        done = await wait_for_status(manager, row["id"], TaskStatus.SUCCESS, timeout=10)
        assert not dead.path.exists()
    assert runs == ["ran"]
    assert (done.recoveries, done.attempt, done.persist, done.arguments) == (0, 1, True, row["arguments"])


async def test_a_live_processes_intake_file_is_left_alone_until_it_dies(make_manager) -> None:
    manager = make_manager()
    row = intake_row("elsewhere:7:alive000")
    alive = other_process_file(manager, "elsewhere:7:alive000", row)
    try:
        assert manager.store.adopt_orphans(stale_after=0) == 0
        assert alive.path.exists()
        assert alive.rows_left() == 1
        assert manager.store.get(row["id"]) is None
    finally:
        die(alive)
    assert manager.store.adopt_orphans(stale_after=0) == 1
    moved = manager.store.get(row["id"])
    # Pending, with no owner and no lease: the take-over claims it next.
    assert (moved.status, moved.owner, moved.lease_expires_at, moved.persist) == ("pending", None, None, True)
    assert not alive.path.exists()


async def test_a_row_moved_before_its_process_died_is_not_recovered_twice(make_manager) -> None:
    manager = make_manager()
    owner = dead_local_owner()
    row = intake_row(owner)
    dead = other_process_file(manager, owner, row)
    # Its batch moved the row and the process died before deleting it from the file.
    finished = {**row, "status": "success", "updated_at": utcnow()}
    write_sql(manager.store, lambda c: c.execute(TASKS.insert().values(**finished)))
    die(dead)
    assert manager.store.adopt_orphans(stale_after=0) == 0
    assert count(manager, TASKS, row["id"]) == 1
    assert manager.store.get(row["id"]).status == "success"
    assert not dead.path.exists()


async def test_an_intake_file_never_set_up_is_deleted_only_once_stale(make_manager) -> None:
    manager = make_manager()
    folder = folder_of(manager)
    folder.mkdir(parents=True, exist_ok=True)
    half = folder / "starting_or_died_starting.db"
    half.touch()  # created; its process would take the lock and create the table next
    assert manager.store.adopt_orphans(stale_after=60) == 0
    assert half.exists()
    assert manager.store.adopt_orphans(stale_after=0) == 0
    assert not half.exists()


async def test_a_clean_stop_deletes_the_intake_file(make_manager) -> None:
    manager = make_manager()

    @manager.task(persist=True)
    async def job() -> None:
        return None

    async with manager.lifespan():
        path = intake_of(manager).path
        tasks = ManagedBackgroundTasks(manager)
        task_id = tasks.add_task(job)
        await tasks()
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
        assert path.exists()
    assert sqlite_of(manager).intake is None
    assert not path.exists()


async def test_rows_left_at_a_stop_are_recovered_at_the_next_start(make_manager) -> None:
    manager = make_manager(lease_seconds=30)
    runs: list[str] = []

    @manager.task(persist=True, name="job")
    async def job() -> None:
        runs.append("ran")

    # A stop whose last writes could not be made (the database was away) leaves the rows in the
    # file; planted here as rows of our own owner id, as such a stop leaves them.
    row = intake_row(manager.owner)
    left = other_process_file(manager, manager.owner, row)
    assert left.close() == 1
    assert left.path.exists()
    async with manager.lifespan():
        await wait_for_status(manager, row["id"], TaskStatus.SUCCESS, timeout=10)
    assert runs == ["ran"]


async def test_a_cancel_waits_for_another_instance_to_write_the_task(make_manager) -> None:
    here = make_manager()
    there = make_manager(write_behind=0.3)
    runs: list[str] = []

    for manager in (here, there):

        @manager.task(persist=True, name="job")
        async def job() -> None:
            runs.append("ran")

    async with here.lifespan(), there.lifespan():
        tasks = ManagedBackgroundTasks(there)
        task_id = tasks.add_task(job)  # in `there`'s intake file, not handed over yet
        assert count(here, TASKS, task_id) == 0
        outcome = await here.cancel(task_id)
        await tasks()  # `there` hands it over now: it must not run
        await there.wait_idle()
        row = await wait_for_status(here, task_id, TaskStatus.CANCELLED)
    assert outcome is CancelOutcome.CANCELLED
    assert row.status == "cancelled"
    assert runs == []


async def test_a_cancel_of_an_unknown_task_says_not_found(make_manager) -> None:
    manager = make_manager()
    async with manager.lifespan():
        outcome = await manager.cancel(str(uuid.uuid4()))
    assert outcome is CancelOutcome.NOT_FOUND


async def test_a_row_stays_in_the_intake_until_a_batch_has_written_it(make_manager) -> None:
    manager = make_manager()
    manager.store.open(manager.owner, stale_after=30)
    first, second = intake_row(manager.owner), intake_row(manager.owner)
    assert manager.store.database.record_durably(first)
    assert manager.store.database.record_durably(second)
    assert intake_of(manager).rows_left() == 2
    manager.store.apply(Batch(inserts=[first]), owner=manager.owner)
    assert intake_of(manager).rows_left() == 1
    assert manager.store.get(first["id"]) is not None
    assert manager.store.get(second["id"]) is None


async def test_the_api_shows_a_task_not_handed_over_yet_as_pending(make_manager, make_app, client_for) -> None:
    manager = make_manager()

    @manager.task(persist=True)
    async def later() -> None:
        return None

    app = make_app(manager)
    async with client_for(app, auth=ADMIN) as client:
        tasks = ManagedBackgroundTasks(manager)
        task_id = tasks.add_task(later)  # not handed over: in the intake file
        assert intake_of(manager).rows_left() == 1
        response = await client.get(f"/tasks/{task_id}")
        await tasks()
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
    assert response.status_code == 200
    assert (response.json()["task_id"], response.json()["status"]) == (task_id, "pending")


async def test_an_intake_folder_that_cannot_be_made_stops_the_start_with_a_clear_error(make_manager) -> None:
    manager = make_manager()
    folder = folder_of(manager)
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("a file where the intake folder goes")
    with pytest.raises(RuntimeError, match=r"cannot open this process's intake file .* must be a folder this process"):
        async with manager.lifespan():
            pass
    assert folder.read_text() == "a file where the intake folder goes"
    assert not manager.running
    folder.unlink()  # fixed: the next start works
    async with manager.lifespan():
        assert manager.running
    assert not manager.running  # and its stop stopped it: the failed start is not counted


async def test_two_recoveries_at_once_move_each_dead_row_exactly_once(make_manager) -> None:
    one, two = make_manager(), make_manager()
    rows = []
    for _ in range(20):
        owner = dead_local_owner()
        file_rows = [intake_row(owner) for _ in range(5)]
        die(other_process_file(one, owner, *file_rows))
        rows += file_rows
    start = threading.Barrier(2)

    def adopt(manager: TaskManager) -> int:
        start.wait()
        return manager.store.adopt_orphans(stale_after=30)

    moved = await asyncio.gather(asyncio.to_thread(adopt, one), asyncio.to_thread(adopt, two))
    # Two probes of one file at the same moment may both find it busy, as if its process lived:
    # the file waits for the next round (every half lease), which this is.
    late = one.store.adopt_orphans(stale_after=30)
    ids = [row["id"] for row in rows]
    in_table = read_sql(
        one.store,
        lambda c: c.execute(select(TASKS.c.id, func.count()).where(TASKS.c.id.in_(ids)).group_by(TASKS.c.id)).all(),
    )
    assert sum(moved) + late == 100
    assert sorted(task_id for task_id, _ in in_table) == sorted(ids)
    assert {copies for _, copies in in_table} == {1}
    assert list(folder_of(one).glob("*.db")) == []


async def test_a_failed_delete_of_moved_rows_is_retried_with_the_next(
    make_manager, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    manager = make_manager()
    manager.store.open(manager.owner, stale_after=30)
    database = manager.store.database
    file = intake_of(manager)
    first, second = intake_row(manager.owner), intake_row(manager.owner)
    assert database.record_durably(first)
    assert database.record_durably(second)
    monkeypatch.setattr(intake_module, "_DELETE", "DELETE FROM no_such_table WHERE ?")
    with caplog.at_level(logging.WARNING, logger="taskflow.store"):
        database.written([first])
    assert any("could not clear moved rows" in record.getMessage() for record in caplog.records)
    assert file.rows_left() == 2
    monkeypatch.undo()
    database.written([second])
    assert file.rows_left() == 0
