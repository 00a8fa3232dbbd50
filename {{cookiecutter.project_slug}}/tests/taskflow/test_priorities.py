"""Task priorities: a higher priority starts first among ready tasks, in one instance and across
instances sharing a database; equal priorities keep enqueue order. Shown and filtered in the admin.

Store-backed tests run on SQLite and PostgreSQL (the `database_url` fixture).
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Connection

from app.taskflow import TaskManager, TaskStatus
from app.taskflow.background import EnqueueOptions, ManagedBackgroundTasks
from app.taskflow.job_queue import JobQueue
from app.taskflow.models import TaskRecord, new_task_row, utcnow
from app.taskflow.options import DEFAULTS, PRIORITY_MAX, PRIORITY_MIN
from app.taskflow.store import intake as intake_module
from app.taskflow.store import leases as lease_sql

from .conftest import ADMIN, ManagerFactory, eventually, wait_for_status
from .sql import captured, write_sql
from .test_intake import die, folder_of, intake_row, other_process_file
from .test_recovery import dead_local_owner

# (label, priority) in enqueue order: the expected start order is by priority, then this order.
MIXED = [("a", 0), ("b", 5), ("c", 0), ("d", 10), ("e", 5), ("f", -1)]
EXPECTED = ["d", "b", "e", "a", "c", "f"]


def declare_note(manager: TaskManager, ran: list[str], release: asyncio.Event | None = None) -> Any:
    @manager.task(name="note", persist=True)
    async def note(label: str) -> None:
        ran.append(label)
        if release is not None:
            await release.wait()

    return note


def enqueue_mixed(manager: TaskManager, note: Any) -> dict[str, str]:
    """Enqueue MIXED with per-enqueue priorities; returns label -> task id."""
    return {
        label: manager.enqueue(note, kwargs={"label": label}, options=EnqueueOptions(priority=priority))
        for label, priority in MIXED
    }


# -- options --------------------------------------------------------------------------------------


def test_the_default_priority_is_zero_and_the_range_is_documented() -> None:
    assert DEFAULTS.priority == 0
    assert (PRIORITY_MIN, PRIORITY_MAX) == (-100, 100)


@pytest.mark.parametrize("bad", [True, 1.5, "5", None, PRIORITY_MAX + 1, PRIORITY_MIN - 1])
def test_a_bad_task_priority_fails_at_decoration_naming_the_task(sqlite_url: str, bad: object) -> None:
    manager = TaskManager(database_url=sqlite_url)
    with pytest.raises(ValueError) as caught:
        manager.task(name="report", priority=bad)
    message = str(caught.value)
    assert "'report'" in message and "-100 to 100" in message and "priority=10" in message, message
    manager.store.dispose()


@pytest.mark.parametrize("bad", [False, 2.0, PRIORITY_MAX + 1])
def test_a_bad_enqueue_priority_fails_before_anything_is_written(sqlite_url: str, bad: Any) -> None:
    manager = TaskManager(database_url=sqlite_url)
    with pytest.raises(ValueError, match="priority must be an int from -100 to 100"):
        ManagedBackgroundTasks(manager).options(priority=bad)
    with pytest.raises(ValueError, match="priority must be an int"):
        EnqueueOptions(priority=bad)
    manager.store.dispose()


async def test_a_task_priority_is_stored_and_an_enqueue_overrides_it(make_manager: ManagerFactory) -> None:
    manager = make_manager()

    @manager.task(name="urgent", priority=7)
    async def urgent() -> None:
        return None

    @manager.task(name="plain")
    async def plain() -> None:
        return None

    # Not started: each row is committed ownerless, with its priority.
    declared = manager.enqueue(urgent)
    overridden = manager.enqueue(urgent, options=EnqueueOptions(priority=-3))
    default = manager.enqueue(plain)
    through_background = ManagedBackgroundTasks(manager).options(priority=PRIORITY_MAX).add_task(plain)
    stored = {task_id: manager.store.get(task_id).priority for task_id in (declared, overridden, default)}
    assert stored == {declared: 7, overridden: -3, default: 0}
    assert manager.store.get(through_background).priority == PRIORITY_MAX
    assert manager.registry.get("urgent").describe()["priority"] == 7  # type: ignore[union-attr]


# -- one instance ---------------------------------------------------------------------------------


def test_the_job_queue_pops_highest_priority_first_and_fifo_within_one() -> None:
    queue: JobQueue[SimpleNamespace] = JobQueue()
    for label, priority in MIXED:
        queue.push(SimpleNamespace(label=label, priority=priority))
    assert len(queue) == len(MIXED)
    popped = [queue.pop().label for _ in range(len(MIXED))]
    assert popped == EXPECTED and not queue
    with pytest.raises(IndexError):
        queue.pop()


async def test_in_one_instance_queued_tasks_start_highest_priority_first_fifo_within_one(
    make_manager: ManagerFactory,
) -> None:
    ran: list[str] = []
    gate = asyncio.Event()
    manager = make_manager(concurrency=1)

    @manager.task(name="hold")
    async def hold() -> None:
        await gate.wait()

    note = declare_note(manager, ran)
    await manager.start()
    holding = manager.enqueue(hold)
    await wait_for_status(manager, holding, TaskStatus.RUNNING.value)
    # The one worker is busy: these queue up here, in this instance's runner.
    ids = enqueue_mixed(manager, note)
    gate.set()
    for task_id in ids.values():
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS.value)
    assert ran == EXPECTED


# -- across instances -----------------------------------------------------------------------------


async def test_claims_of_ownerless_rows_take_the_highest_priority_first_oldest_first_within_one(
    make_manager: ManagerFactory,
) -> None:
    planter = make_manager()
    note = declare_note(planter, [])
    ids = enqueue_mixed(planter, note)  # not started: ownerless rows
    label_of = {task_id: label for label, task_id in ids.items()}
    until = utcnow() + timedelta(seconds=30)
    store = planter.store

    claimed = [store.claim_ownerless(owner, until=until, limit=2, names=["note"]).rows for owner in ("a", "b", "a")]

    assert [[label_of[row.id] for row in batch] for batch in claimed] == [EXPECTED[:2], EXPECTED[2:4], EXPECTED[4:]]
    assert [[row.priority for row in batch] for batch in claimed] == [[10, 5], [5, 0], [0, -1]]


async def test_two_instances_start_the_highest_priority_ready_task_first(make_manager: ManagerFactory) -> None:
    ran: list[str] = []
    release = asyncio.Event()
    web = make_manager(concurrency=0)  # enqueue-only: every row is committed ownerless
    note = declare_note(web, [])
    await web.start()
    ids = enqueue_mixed(web, note)

    first = make_manager(concurrency=1)
    declare_note(first, ran, release)
    await first.start()
    await eventually(lambda: ran == EXPECTED[:1])
    second = make_manager(concurrency=1)
    declare_note(second, ran, release)
    await second.start()
    await eventually(lambda: ran == EXPECTED[:2])  # b (5) before e (5): enqueued first

    rows = {label: web.store.get(task_id) for label, task_id in ids.items()}
    assert rows["d"].owner == first.owner and rows["b"].owner == second.owner
    assert {rows[label].status for label in EXPECTED[2:]} == {TaskStatus.PENDING.value}
    release.set()
    for task_id in ids.values():
        await wait_for_status(web, task_id, TaskStatus.SUCCESS.value)
    assert sorted(ran) == sorted(EXPECTED)


# -- the claim's plan -----------------------------------------------------------------------------


def test_the_claim_reads_its_batch_off_the_unowned_index_in_priority_order_without_a_sort(
    database_url: str,
) -> None:
    manager = TaskManager(database_url=database_url)
    store = manager.store
    now = utcnow()
    finished = [
        new_task_row(id=str(uuid.uuid4()), name="note", status=TaskStatus.SUCCESS.value, created_at=now)
        for _ in range(2000)
    ]
    waiting = [
        new_task_row(id=str(uuid.uuid4()), name="note", persist=True, priority=n % 7 - 3, created_at=now)
        for n in range(200)
    ]
    write_sql(store, lambda c: c.execute(insert(TaskRecord.__table__), finished + waiting))  # type: ignore[attr-defined]

    def explain(connection: Connection) -> str:
        with captured(connection) as statements:
            lease_sql.released_ids(connection, limit=10, names=["note"], due=now, lock=True)
        sql, parameters = statements[-1]
        if store.dialect == "sqlite":
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters).fetchall()
            return "\n".join(str(row[-1]) for row in rows).lower()
        connection.exec_driver_sql("ANALYZE taskflow_tasks")
        # A test table is small enough for a sequential scan and a sort; forbid them as a table of
        # millions would, to see that the index serves the claim in order.
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            connection.exec_driver_sql(f"SET LOCAL {setting} = off")
        rows = connection.exec_driver_sql(f"EXPLAIN {sql}", parameters).fetchall()
        return "\n".join(str(row[0]) for row in rows).lower()

    try:
        text = write_sql(store, explain)
    finally:
        store.dispose()
    assert "ix_taskflow_tasks_unowned" in text, text
    if store.dialect == "sqlite":
        assert "use temp b-tree for order by" not in text, text
    else:
        assert "index scan" in text and "sort" not in text and "seq scan" not in text, text
        assert "lockrows" in text, text  # FOR UPDATE SKIP LOCKED: one statement locks the batch


# -- admin ----------------------------------------------------------------------------------------


async def test_the_admin_shows_priority_and_filters_by_a_minimum(make_manager, make_app, client_for) -> None:
    manager = make_manager()

    @manager.task(name="job")
    async def job() -> None:
        return None

    app = make_app(manager)
    async with client_for(app, auth=ADMIN) as client:
        ids = {p: manager.enqueue(job, options=EnqueueOptions(priority=p)) for p in (-5, 0, 3, 9)}
        for task_id in ids.values():
            await wait_for_status(manager, task_id, TaskStatus.SUCCESS.value)
        listed = await client.get("/tasks", params={"min_priority": 3})
        too_high = await client.get("/tasks", params={"min_priority": PRIORITY_MAX + 1})
        page = await client.get("/tasks/dashboard", params={"min_priority": "1"})
        bad_page = await client.get("/tasks/dashboard", params={"min_priority": "high"})
        detail = await client.get(f"/tasks/dashboard/tasks/{ids[-5]}")
        one = await client.get(f"/tasks/{ids[9]}")
    assert {t["task_id"]: t["priority"] for t in listed.json()} == {ids[9]: 9, ids[3]: 3}
    assert too_high.status_code == 422
    assert page.status_code == 200 and ids[9] in page.text and ids[3] in page.text
    assert ids[0] not in page.text and "priority 9" in page.text
    assert 'name="min_priority" value="1"' in page.text
    assert "minimum priority must be a whole number" in bad_page.text
    assert "<th>Priority</th><td>-5</td>" in detail.text
    assert one.json()["priority"] == 9


# -- SQLite's intake files ------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_dead_processes_intake_rows_keep_their_priority(make_manager: ManagerFactory) -> None:
    manager = make_manager()
    owner = dead_local_owner()
    row = intake_row(owner, priority=8)
    die(other_process_file(manager, owner, row))
    assert await asyncio.to_thread(manager.store.adopt_orphans, stale_after=0) == 1
    assert manager.store.get(row["id"]).priority == 8


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_intake_file_written_before_priorities_is_recovered_at_the_default(
    make_manager: ManagerFactory,
) -> None:
    manager = make_manager()
    owner = dead_local_owner()
    path = folder_of(manager) / intake_module.file_name(owner)
    path.parent.mkdir(parents=True, exist_ok=True)
    task_id = str(uuid.uuid4())
    old = sqlite3.connect(path)
    with old:  # the intake table as it was before the priority column
        old.execute(
            "CREATE TABLE taskflow_intake (seq INTEGER PRIMARY KEY, id VARCHAR(36) NOT NULL, name VARCHAR(200) "
            "NOT NULL, arguments TEXT NOT NULL, max_attempts INTEGER NOT NULL, owner VARCHAR(200) NOT NULL, "
            "created_at DATETIME NOT NULL, next_run_at DATETIME)"
        )
        old.execute(
            "INSERT INTO taskflow_intake (id, name, arguments, max_attempts, owner, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (task_id, "job", '{"args": [], "kwargs": {}}', 1, owner, "2026-01-01 00:00:00.000000"),
        )
    old.close()
    assert await asyncio.to_thread(manager.store.adopt_orphans, stale_after=0) == 1
    row = manager.store.get(task_id)
    assert (row.priority, row.status, row.owner) == (DEFAULTS.priority, TaskStatus.PENDING.value, None)


async def test_a_retry_keeps_the_priority_of_the_task_it_retries(make_manager: ManagerFactory) -> None:
    manager = make_manager()

    @manager.task(name="fails")
    async def fails() -> None:
        raise ValueError("no")

    async with manager.lifespan():
        task_id = manager.enqueue(fails, options=EnqueueOptions(priority=4))
        await wait_for_status(manager, task_id, TaskStatus.FAILED.value)
        retried = await manager.retry(task_id)
        await wait_for_status(manager, retried, TaskStatus.FAILED.value)
    assert manager.store.get(retried).priority == 4
