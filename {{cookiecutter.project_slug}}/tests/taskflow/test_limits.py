"""Concurrency limits: `@task(max_concurrent=N)` per task name and `max_concurrent_per_key` per
`options(concurrency_key=...)`, enforced by the claim of ownerless rows across every instance
sharing a database. A task over its limit stays PENDING and starts when a slot frees; a crashed
holder's slot frees with its lease.

Store-backed tests run on SQLite and PostgreSQL (the `database_url` fixture); the counters the
limits are checked against are kept by the tasks themselves, as they start and end.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Connection

from app.taskflow import TaskManager, TaskStatus
from app.taskflow.background import EnqueueOptions, ManagedBackgroundTasks
from app.taskflow.models import TaskRecord, new_task_row, utcnow
from app.taskflow.options import DEFAULTS
from app.taskflow.store import TaskFilter, TaskLimits
from app.taskflow.store import leases as lease_sql
from app.taskflow.store import limits as limit_sql

from .conftest import ADMIN, ManagerFactory, eventually, wait_for_status
from .sql import captured, query_plan, write_sql

TASKS = TaskRecord.__table__  # type: ignore[attr-defined]


class Occupancy:
    """What the tasks themselves report: how many run at once, overall and per key, at most."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.finished = 0

    def enter(self, key: str) -> None:
        with self._lock:
            for counted in (key, "*"):
                self.running[counted] += 1
                self.most[counted] = max(self.most[counted], self.running[counted])

    def leave(self, key: str) -> None:
        with self._lock:
            self.running[key] -= 1
            self.running["*"] -= 1
            self.finished += 1


def declare_limited(
    manager: TaskManager, occupancy: Occupancy, gate: asyncio.Event | None = None, **limits: Any
) -> Any:
    """A task that reports its start and end; with a gate, it holds its slot until the gate opens."""

    @manager.task(name="limited", **limits)
    async def limited(key: str) -> None:
        occupancy.enter(key)
        if gate is not None:
            await gate.wait()
        await asyncio.sleep(0.01)  # long enough for a second start to overlap, if one were let in
        occupancy.leave(key)

    return limited


# -- options --------------------------------------------------------------------------------------


def test_tasks_have_no_concurrency_limit_by_default() -> None:
    assert DEFAULTS.max_concurrent is None and DEFAULTS.max_concurrent_per_key is None
    assert not DEFAULTS.limited


@pytest.mark.parametrize("option", ["max_concurrent", "max_concurrent_per_key"])
@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
def test_a_bad_limit_fails_at_decoration_naming_the_task_and_an_example(
    sqlite_url: str, option: str, bad: object
) -> None:
    manager = TaskManager(database_url=sqlite_url)
    with pytest.raises(ValueError) as caught:
        manager.task(name="report", **{option: bad})
    message = str(caught.value)
    assert f"{option} of task 'report' must be an int >= 1" in message and f"{option}=2" in message, message
    manager.store.dispose()


@pytest.mark.parametrize("bad", ["", "x" * 201, 7])
def test_a_bad_concurrency_key_fails_before_anything_is_written(sqlite_url: str, bad: Any) -> None:
    manager = TaskManager(database_url=sqlite_url)
    with pytest.raises(ValueError, match="concurrency_key must be a non-empty str"):
        ManagedBackgroundTasks(manager).options(concurrency_key=bad)
    manager.store.dispose()


def test_a_concurrency_key_for_a_task_without_a_per_key_limit_is_refused(sqlite_url: str) -> None:
    manager = TaskManager(database_url=sqlite_url)

    @manager.task(name="report", persist=True, max_concurrent=2)
    async def report() -> None:
        return None

    with pytest.raises(ValueError, match="declares no max_concurrent_per_key"):
        manager.enqueue(report, options=EnqueueOptions(concurrency_key="tenant-1"))
    assert manager.store.count(TaskFilter()) == 0
    manager.store.dispose()


# -- across instances -----------------------------------------------------------------------------


def ran_by(manager: TaskManager, task_ids: list[str]) -> set[str]:
    """The owners of the tasks that have finished with success."""
    rows = [manager.store.get(task_id) for task_id in task_ids]
    return {row.owner for row in rows if row is not None and row.status == TaskStatus.SUCCESS.value}


async def test_max_concurrent_is_never_exceeded_by_two_instances(make_manager: ManagerFactory) -> None:
    occupancy = Occupancy()
    gate = asyncio.Event()
    first, second = managers = [make_manager(concurrency=5), make_manager(concurrency=5)]
    tasks = [declare_limited(manager, occupancy, gate, max_concurrent=2) for manager in managers]
    await first.start()
    ids = [managers[n % 2].enqueue(tasks[n % 2], kwargs={"key": "all"}) for n in range(50)]
    # The first instance holds both slots; the second starts (and claims) against the full limit.
    await eventually(lambda: occupancy.running["*"] == 2, timeout=60)
    await second.start()
    # Then the first stops once its tasks end, so the second runs the rest: which instance wins a
    # claim is otherwise a race, and both instances must run some for the test to mean anything.
    gate.set()
    await first.stop()
    for task_id in ids:
        await wait_for_status(second, task_id, TaskStatus.SUCCESS.value)
    assert occupancy.finished == 50
    assert occupancy.most["*"] == 2  # reached, never passed
    assert ran_by(second, ids) == {manager.owner for manager in managers}  # both instances ran some


async def test_retries_of_a_limited_task_wait_for_a_slot_too(make_manager: ManagerFactory) -> None:
    occupancy = Occupancy()
    failed_once: set[int] = set()
    managers = [make_manager(concurrency=4), make_manager(concurrency=4)]
    tasks = []
    for manager in managers:

        @manager.task(name="flaky", max_concurrent=2, retries=1, delay=0.1)
        async def flaky(n: int) -> None:
            occupancy.enter("all")
            await asyncio.sleep(0.05)  # while it runs, the other slot's retry would start if it could
            occupancy.leave("all")
            if n not in failed_once:
                failed_once.add(n)
                raise RuntimeError("first attempt fails")

        tasks.append(flaky)
    for manager in managers:
        await manager.start()
    ids = [managers[n % 2].enqueue(tasks[n % 2], kwargs={"n": n}) for n in range(12)]
    for task_id in ids:
        await wait_for_status(managers[0], task_id, TaskStatus.SUCCESS.value, timeout=60)
    assert occupancy.finished == 24 and occupancy.most["*"] <= 2


async def test_a_per_key_limit_never_runs_two_of_one_key_at_once(make_manager: ManagerFactory) -> None:
    occupancy = Occupancy()
    managers = [make_manager(concurrency=4), make_manager(concurrency=4)]
    tasks = [declare_limited(manager, occupancy, max_concurrent_per_key=1) for manager in managers]
    for manager in managers:
        await manager.start()
    keys = [f"tenant-{n % 3}" for n in range(30)]
    ids = [
        managers[n % 2].enqueue(tasks[n % 2], kwargs={"key": key}, options=EnqueueOptions(concurrency_key=key))
        for n, key in enumerate(keys)
    ]
    await eventually(lambda: occupancy.finished == 30, timeout=60)
    for task_id in ids:
        await wait_for_status(managers[0], task_id, TaskStatus.SUCCESS.value)
    assert {key: occupancy.most[key] for key in set(keys)} == {key: 1 for key in set(keys)}
    assert managers[0].store.get(ids[0]).concurrency_key == "tenant-0"


async def test_a_task_over_its_limit_stays_pending_until_a_slot_frees(make_manager: ManagerFactory) -> None:
    manager = make_manager(concurrency=4)
    release = asyncio.Event()
    started: list[int] = []

    @manager.task(name="one_at_a_time", max_concurrent=1)
    async def one_at_a_time(n: int) -> None:
        started.append(n)
        await release.wait()

    @manager.task(name="other", max_concurrent=1)
    async def other() -> None:
        return None

    await manager.start()
    first, second = (manager.enqueue(one_at_a_time, kwargs={"n": n}) for n in (1, 2))
    await wait_for_status(manager, first, TaskStatus.RUNNING.value)
    # `other` is started by a claim that also weighed `second` (one transaction takes every limited name).
    await wait_for_status(manager, manager.enqueue(other), TaskStatus.SUCCESS.value)
    assert started == [1]
    assert (await asyncio.to_thread(manager.store.get, second)).status == TaskStatus.PENDING.value
    release.set()
    await wait_for_status(manager, second, TaskStatus.SUCCESS.value)
    assert started == [1, 2]


async def test_a_crashed_holders_task_waits_for_a_slot_and_runs_again(make_manager: ManagerFactory) -> None:
    manager = make_manager(concurrency=2)
    ran: list[str] = []

    @manager.task(name="export", max_concurrent=1)
    async def export(label: str) -> None:
        ran.append(label)

    lost = pending(
        "export",
        status=TaskStatus.RUNNING.value,
        owner="crashed-host:4242:gone",
        attempt=1,
        arguments='{"args": [], "kwargs": {"label": "lost"}}',
    )
    lost["lease_expires_at"] = utcnow() - timedelta(seconds=1)
    write_sql(manager.store, lambda c: plant(c, [lost]))
    await manager.start()
    fresh = manager.enqueue(export, kwargs={"label": "fresh"})
    await wait_for_status(manager, lost["id"], TaskStatus.SUCCESS.value)
    await wait_for_status(manager, fresh, TaskStatus.SUCCESS.value)
    assert sorted(ran) == ["fresh", "lost"]
    row = await asyncio.to_thread(manager.store.get, lost["id"])
    assert row.recoveries == 1 and row.owner == manager.owner


async def test_a_limited_drain_of_short_tasks_does_not_wait_for_the_poll(make_manager: ManagerFactory) -> None:
    # Tasks that end while the next claim runs (their slots counted taken by it) must wake the
    # claim that follows; with a poll far beyond the deadline, only such wake-ups drain the backlog.
    manager = make_manager(concurrency=4, poll_interval=60.0, lease_seconds=600.0)
    occupancy = Occupancy()

    @manager.task(persist=True, name="quick", max_concurrent=2)
    async def quick() -> None:
        occupancy.enter("all")
        occupancy.leave("all")

    rows = [pending("quick") for _ in range(200)]
    write_sql(manager.store, lambda c: plant(c, rows))
    await manager.start()
    await eventually(lambda: occupancy.finished == len(rows), timeout=30)
    assert occupancy.most["*"] <= 2
    for row in rows[-3:]:
        await wait_for_status(manager, row["id"], TaskStatus.SUCCESS.value)


# -- the claim ------------------------------------------------------------------------------------


def plant(connection: Connection, rows: list[dict[str, Any]]) -> None:
    connection.execute(insert(TASKS), rows)


def pending(name: str, **values: Any) -> dict[str, Any]:
    return new_task_row(id=str(uuid.uuid4()), name=name, persist=True, **values)


def claim(manager: TaskManager, owner: str, limits: dict[str, TaskLimits], limit: int = 10) -> list[Any]:
    until = utcnow() + timedelta(seconds=30)
    return manager.store.claim_ownerless(owner, until=until, limit=limit, names=list(limits), limits=limits).rows


def test_a_running_holder_keeps_its_slot_until_its_lease_expires(database_url: str) -> None:
    manager = TaskManager(database_url=database_url)
    store = manager.store
    now = utcnow()
    holder = pending("report", status=TaskStatus.RUNNING.value, owner="other-host:1:gone", attempt=1)
    holder["lease_expires_at"] = now + timedelta(minutes=5)
    waiting = pending("report")
    write_sql(store, lambda c: plant(c, [holder, waiting]))
    limits = {"report": TaskLimits(max_concurrent=1)}
    try:
        assert claim(manager, "me:1:x", limits) == []
        # The holder crashed: once its lease has run out, its slot is free.
        write_sql(
            store,
            lambda c: c.execute(
                TASKS.update().where(TASKS.c.id == holder["id"]).values(lease_expires_at=now - timedelta(seconds=1))
            ),
        )
        assert [row.id for row in claim(manager, "me:1:x", limits)] == [waiting["id"]]
        assert claim(manager, "me:1:x", limits) == []  # and now the new holder keeps it
    finally:
        store.dispose()


def test_the_claim_takes_free_slots_per_key_in_priority_order(database_url: str) -> None:
    manager = TaskManager(database_url=database_url)
    store = manager.store
    now = utcnow()
    busy = pending("sync", status=TaskStatus.RUNNING.value, owner="o:1:x", concurrency_key="a", attempt=1)
    busy["lease_expires_at"] = now + timedelta(minutes=5)
    rows = [
        pending("sync", concurrency_key="a", created_at=now),
        pending("sync", concurrency_key="b", created_at=now + timedelta(milliseconds=1)),
        pending("sync", concurrency_key="b", priority=5, created_at=now + timedelta(milliseconds=2)),
        pending("sync", concurrency_key="c", created_at=now + timedelta(milliseconds=3)),
        pending("sync", created_at=now + timedelta(milliseconds=4)),  # no key: only max_concurrent holds it
    ]
    write_sql(store, lambda c: plant(c, [busy, *rows]))
    try:
        taken = claim(manager, "me:1:x", {"sync": TaskLimits(max_concurrent=4, max_per_key=1)})
    finally:
        store.dispose()
    # 3 free slots of 4 (busy "a" holds one): b's priority-5 row, then c, then the keyless row.
    assert [row.id for row in taken] == [rows[2]["id"], rows[3]["id"], rows[4]["id"]]


def test_rows_of_tasks_without_limits_are_claimed_as_before_beside_limited_ones(database_url: str) -> None:
    manager = TaskManager(database_url=database_url)
    store = manager.store
    now = utcnow()
    limited = [pending("limited", created_at=now + timedelta(milliseconds=n)) for n in range(3)]
    free = [pending("free", created_at=now + timedelta(milliseconds=10 + n)) for n in range(3)]
    write_sql(store, lambda c: plant(c, limited + free))
    try:
        until = now + timedelta(seconds=30)
        taken = store.claim_ownerless(
            "me:1:x",
            until=until,
            limit=10,
            names=["limited", "free"],
            limits={"limited": TaskLimits(max_concurrent=1)},
        ).rows
    finally:
        store.dispose()
    assert [row.id for row in taken] == [limited[0]["id"]] + [row["id"] for row in free]


def test_the_limited_claim_counts_running_rows_and_reads_pending_ones_through_indexes(database_url: str) -> None:
    manager = TaskManager(database_url=database_url)
    store = manager.store
    now = utcnow()
    finished = [pending("limited", status=TaskStatus.SUCCESS.value, created_at=now) for _ in range(2000)]
    waiting = [pending("limited", created_at=now) for _ in range(200)]
    write_sql(store, lambda c: plant(c, finished + waiting))

    def explain(connection: Connection) -> str:
        with captured(connection) as statements:
            limit = TaskLimits(max_concurrent=2)
            limit_sql.limited_ids(
                connection, name="limited", limit=limit, room=10, now=now, unowned=lease_sql.released_ids
            )
        plans = [
            query_plan(connection, sql, parameters, table="taskflow_tasks")
            for sql, parameters in statements
            if "pg_advisory_xact_lock" not in sql
        ]
        return "\n---\n".join(plans)

    try:
        text = write_sql(store, explain)
    finally:
        store.dispose()
    running_plan, pending_plan = text.split("\n---\n")
    assert "ix_taskflow_tasks_status_created" in running_plan, running_plan
    assert "ix_taskflow_tasks_unowned" in pending_plan, pending_plan
    assert "seq scan" not in text, text


# -- admin ----------------------------------------------------------------------------------------


async def test_the_admin_task_page_shows_why_a_pending_task_waits(
    make_manager: ManagerFactory, make_app: Any, client_for: Any
) -> None:
    manager = make_manager(concurrency=2)
    release = asyncio.Event()

    @manager.task(name="export", max_concurrent=1)
    async def export() -> None:
        await release.wait()

    app = make_app(manager)
    async with client_for(app, auth=ADMIN) as client:
        running = manager.enqueue(export)
        await wait_for_status(manager, running, TaskStatus.RUNNING.value)
        held = manager.enqueue(export)
        delayed = manager.enqueue(export, options=EnqueueOptions(delay=3600))
        held_page = await client.get(f"/tasks/dashboard/tasks/{held}")
        delayed_page = await client.get(f"/tasks/dashboard/tasks/{delayed}")
        listing = await client.get("/tasks/dashboard", params={"status": "pending"})
        registry = await client.get("/tasks/dashboard/registry")
        release.set()
        await wait_for_status(manager, held, TaskStatus.SUCCESS.value)
    assert "concurrency limit: 1 of export running (max_concurrent=1)" in held_page.text, held_page.text
    assert "delayed until" in delayed_page.text
    # The list marks both, with the same words on hover (a task waiting its turn gets no mark).
    assert '<span class="badge waiting-limit" title="concurrency limit: 1 of export running' in listing.text
    assert '<span class="badge waiting-delay" title="delayed until' in listing.text
    assert "<td>1 at once</td>" in registry.text
