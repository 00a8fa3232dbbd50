"""Leases, recovery, fencing, the crash-loop cap and graceful shutdown, in process, on both engines.

Rows are planted straight in the table to stand for what a dead or stalled instance left behind.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, update

from app.taskflow import TaskManager, TaskStatus
from app.taskflow.leases import dead_local_owners, process_scope
from app.taskflow.models import new_task_row, utcnow
from app.taskflow.store import Batch, Finish, open_store
from app.taskflow.store import leases as lease_sql
from app.taskflow.store.writes import TASKS

from .conftest import eventually, wait_for_status
from .sql import write_sql

GONE = "elsewhere:1:gone0000"  # another host's owner, known only by its expired leases
ALIVE = "elsewhere:2:alive000"


def plant(manager: TaskManager, name: str, *, count: int = 1, **values: Any) -> list[str]:
    """Insert task rows as another instance would have left them; returns their ids."""
    now = utcnow()
    rows = [
        new_task_row(
            id=str(uuid.uuid4()),
            name=name,
            **{"persist": True, "owner": GONE, "lease_expires_at": now - timedelta(seconds=1), **values},
        )
        for _ in range(count)
    ]
    write_sql(manager.store, lambda c: c.execute(insert(TASKS), rows))
    return [row["id"] for row in rows]


def take_over(manager: TaskManager, owner: str, *, limit: int = 1000, max_recoveries: int = 5) -> list[Any]:
    now = utcnow()
    return write_sql(
        manager.store,
        lambda c: lease_sql.take_over_expired(
            c,
            owner=owner,
            now=now,
            until=now + timedelta(seconds=30),
            limit=limit,
            max_recoveries=max_recoveries,
        ),
    )


def dead_local_owner() -> str:
    """An owner id of this host whose process has exited and been reaped (its pid is free)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return f"{process_scope()}:{process.pid}:deadbeef"


# -- taking over expired work ---------------------------------------------------------------------


async def test_a_dead_owners_expired_rows_are_recovered_and_run(make_manager) -> None:
    manager = make_manager()
    runs: list[str] = []

    @manager.task(persist=True, name="job")
    async def job() -> None:
        runs.append("ran")

    pending = plant(manager, "job")
    running = plant(manager, "job", status=TaskStatus.RUNNING.value, attempt=1)
    async with manager.lifespan():
        pending_row = await wait_for_status(manager, pending[0], TaskStatus.SUCCESS)
        running_row = await wait_for_status(manager, running[0], TaskStatus.SUCCESS)
    assert len(runs) == 2
    # Only a row that was RUNNING when its owner died counts as a crash recovery.
    assert (pending_row.recoveries, pending_row.attempt) == (0, 1)
    assert (running_row.recoveries, running_row.attempt) == (1, 2)


async def test_an_attempt_cut_short_by_a_crash_is_listed_with_its_start_and_owner_before_the_rerun(
    make_manager,
) -> None:
    manager = make_manager()

    @manager.task(persist=True, name="job")
    async def job() -> None:
        return None

    began = utcnow() - timedelta(minutes=3)
    task_id = plant(manager, "job", status=TaskStatus.RUNNING.value, attempt=1, started_at=began)[0]
    async with manager.lifespan():
        row = await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
    crashed, rerun = manager.store.attempts(task_id)
    assert (crashed.number, crashed.status, crashed.owner, crashed.started_at) == (1, "crashed", GONE, began)
    assert GONE in crashed.error_message and manager.owner in crashed.error_message
    assert crashed.finished_at <= rerun.started_at
    assert (rerun.number, rerun.status, rerun.owner) == (2, TaskStatus.SUCCESS.value, manager.owner)
    # A crash is a recovery, not a failed try: no retry of the task's own was used.
    assert (row.attempt, row.recoveries, row.retries_used) == (2, 1, 0)


async def test_a_dead_owner_on_this_host_is_taken_over_before_its_lease_expires(make_manager) -> None:
    manager = make_manager(lease_seconds=30)

    @manager.task(persist=True, name="job")
    async def job() -> None:
        return None

    far = utcnow() + timedelta(hours=1)
    task_id = plant(
        manager, "job", status=TaskStatus.RUNNING.value, attempt=1, owner=dead_local_owner(), lease_expires_at=far
    )[0]
    async with manager.lifespan():
        row = await wait_for_status(manager, task_id, TaskStatus.SUCCESS, timeout=5)
    assert row.recoveries == 1


def test_an_owner_of_the_same_host_name_in_another_pid_namespace_is_never_taken_for_dead() -> None:
    # Two containers with one host name: the other's pid means nothing in our namespace.
    gone_here = dead_local_owner()
    elsewhere = f"{socket.gethostname()}/1:{gone_here.split(':')[1]}:cafecafe"
    assert dead_local_owners([gone_here, elsewhere], me="me:1:aaaa") == [gone_here]


async def test_a_live_owners_rows_are_left_alone(make_manager) -> None:
    manager = make_manager()

    @manager.task(persist=True, name="job")
    async def job() -> None:
        return None

    far = utcnow() + timedelta(hours=1)
    alive = plant(manager, "job", status=TaskStatus.RUNNING.value, attempt=1, owner=ALIVE, lease_expires_at=far)[0]
    gone = plant(manager, "job")[0]
    async with manager.lifespan():
        await wait_for_status(manager, gone, TaskStatus.SUCCESS)  # a recovery pass has run
        row = await asyncio.to_thread(manager.store.get, alive)
    assert (row.status, row.owner, row.attempt) == (TaskStatus.RUNNING.value, ALIVE, 1)


async def test_tasks_this_instance_does_not_register_are_left_to_one_that_does(make_manager) -> None:
    # A rolling deploy: a dead instance of the new version left a task type the old one lacks.
    old, new = make_manager(), make_manager()

    @old.task(persist=True, name="job")
    async def job() -> None:
        return None

    @new.task(persist=True, name="new_job")
    async def new_job() -> None:
        return None

    known = plant(old, "job")[0]
    unknown = plant(old, "new_job")[0]
    async with old.lifespan():
        await wait_for_status(old, known, TaskStatus.SUCCESS)  # a recovery pass has run
        row = await asyncio.to_thread(old.store.get, unknown)
        assert (row.status, row.owner) == (TaskStatus.PENDING.value, GONE)
        async with new.lifespan():
            await wait_for_status(new, unknown, TaskStatus.SUCCESS)


def test_an_instance_never_takes_over_its_own_expired_rows(make_manager) -> None:
    # Its lease ran out while the database was locked or unreachable, but it is alive and still
    # running them: taking them over would run them twice.
    manager = make_manager()
    mine = plant(manager, "job", status=TaskStatus.RUNNING.value, attempt=1, owner="me:1:aaaa")
    assert take_over(manager, "me:1:aaaa") == []
    assert [row.id for row in take_over(manager, "other:2:bbbb")] == mine


def test_two_instances_recovering_at_once_never_take_the_same_row(make_manager, database_url: str) -> None:
    manager = make_manager()
    planted = set(plant(manager, "job", count=3000))
    stores = [open_store(database_url) for _ in range(4)]
    taken: list[list[str]] = [[] for _ in stores]
    oversized: list[int] = []
    start = threading.Barrier(len(stores))

    def take_batch(connection: Any, owner: str) -> list[Any]:
        now = utcnow()
        until = now + timedelta(seconds=30)
        return lease_sql.take_over_expired(connection, owner=owner, now=now, until=until, limit=200, max_recoveries=5)

    def recover(index: int) -> None:
        owner = f"instance:{index}:{index:04d}"
        start.wait()
        while True:
            rows = write_sql(stores[index], lambda c: take_batch(c, owner))
            # The locking sub-select runs once: re-run on conflicts, it once took 4x its limit.
            if len(rows) > 200:
                oversized.append(len(rows))
            taken[index].extend(row.id for row in rows)
            if not rows:
                return

    threads = [threading.Thread(target=recover, args=(index,)) for index in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for store in stores:
        store.dispose()
    every = [task_id for ids in taken for task_id in ids]
    assert len(every) == len(set(every)), "a row was taken by two instances"
    assert set(every) == planted
    assert oversized == [], "a take-over returned more rows than its limit"


# -- fencing and the crash-loop cap ---------------------------------------------------------------


def test_a_stale_owners_late_outcome_is_rejected(make_manager) -> None:
    manager = make_manager()
    task_id = plant(manager, "job", status=TaskStatus.RUNNING.value, attempt=1, owner="stale:1:aaaa")[0]
    assert [row.id for row in take_over(manager, "new:2:bbbb")] == [task_id]
    assert manager.store.apply(Batch(claims=[task_id]), owner="new:2:bbbb").claimed == {task_id: 2}

    stale = manager.store.apply(Batch(finishes=[finish(task_id, 1, "stale:1:aaaa")]), owner="stale:1:aaaa")
    fresh = manager.store.apply(Batch(finishes=[finish(task_id, 2, "new:2:bbbb")]), owner="new:2:bbbb")
    assert (stale.rejected, fresh.rejected) == ([task_id], [])
    row = manager.store.get(task_id)
    assert (row.status, row.attempt, row.owner) == (TaskStatus.SUCCESS.value, 2, "new:2:bbbb")
    # The stale owner's attempt is the one recorded at the take-over, never its late outcome.
    attempts = [(a.number, a.owner, a.status) for a in manager.store.attempts(task_id)]
    assert attempts == [(1, "stale:1:aaaa", "crashed"), (2, "new:2:bbbb", TaskStatus.SUCCESS.value)]


def test_a_task_that_keeps_crashing_is_quarantined_past_the_cap(make_manager) -> None:
    manager = make_manager()
    running = {"status": TaskStatus.RUNNING.value, "attempt": 3}
    last_chance = plant(manager, "job", recoveries=1, **running)[0]
    over = plant(manager, "job", recoveries=2, **running)[0]
    rows = {row.id: row for row in take_over(manager, "new:2:bbbb", max_recoveries=2)}
    assert (rows[last_chance].status, rows[last_chance].recoveries) == (TaskStatus.PENDING.value, 2)
    assert (rows[over].status, rows[over].recoveries) == (TaskStatus.FAILED.value, 3)
    assert "exceeded recovery attempts" in rows[over].error_message
    assert rows[over].finished_at is not None


async def test_a_quarantined_task_is_failed_and_never_runs(make_manager) -> None:
    manager = make_manager(max_recoveries=1)
    runs: list[str] = []

    @manager.task(persist=True, name="poison")
    async def poison() -> None:
        runs.append("ran")

    task_id = plant(manager, "poison", status=TaskStatus.RUNNING.value, attempt=2, recoveries=1)[0]
    async with manager.lifespan():
        row = await wait_for_status(manager, task_id, TaskStatus.FAILED)
    assert runs == []
    assert "exceeded recovery attempts" in row.error_message


# -- what a recovered row carries -----------------------------------------------------------------


async def test_a_recovered_retry_still_waits_for_its_next_run_at(make_manager) -> None:
    manager = make_manager()

    @manager.task(persist=True, retries=2, name="job")
    async def job() -> None:
        return None

    next_run_at = utcnow() + timedelta(seconds=1)
    task_id = plant(manager, "job", attempt=1, max_attempts=3, next_run_at=next_run_at)[0]
    async with manager.lifespan():
        row = await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
    assert row.started_at >= next_run_at - timedelta(milliseconds=50)
    assert (row.attempt, row.recoveries) == (2, 0)


async def test_unpersisted_rows_of_a_dead_owner_become_interrupted(make_manager) -> None:
    manager = make_manager()
    runs: list[str] = []

    @manager.task(name="fleeting")
    async def fleeting() -> None:
        runs.append("ran")

    task_ids = plant(manager, "fleeting", count=2, persist=False)
    write_sql(
        manager.store,
        lambda c: c.execute(update(TASKS).where(TASKS.c.id == task_ids[0]).values(status="running", attempt=1)),
    )
    async with manager.lifespan():
        rows = [await wait_for_status(manager, task_id, TaskStatus.INTERRUPTED) for task_id in task_ids]
    assert runs == []
    assert all(row.owner is None and row.finished_at is not None for row in rows)


async def test_a_row_owned_here_without_a_job_is_handed_to_recovery(make_manager) -> None:
    # The claim committed but the connection dropped before the answer: the retried claim found
    # the row RUNNING already, so no job runs it here, while our heartbeat keeps its lease alive.
    manager = make_manager(lease_seconds=1)

    @manager.task(persist=True, name="job")
    async def job() -> None:
        return None

    long_ago = utcnow() - timedelta(minutes=5)
    task_id = plant(
        manager, "job", status=TaskStatus.RUNNING.value, attempt=1, owner=manager.owner, updated_at=long_ago
    )[0]
    async with manager.lifespan():
        row = await wait_for_status(manager, task_id, TaskStatus.SUCCESS, timeout=15)
    assert (row.attempt, row.recoveries) == (2, 1)


async def test_a_long_task_outliving_its_lease_period_is_not_handed_back(make_manager) -> None:
    manager = make_manager(lease_seconds=1)
    runs: list[int] = []

    @manager.task(persist=True, name="slow")
    async def slow() -> None:
        runs.append(1)
        await asyncio.sleep(2.5)  # several lease periods without a single write to its row

    async with manager.lifespan():
        task_id = manager.enqueue(slow)
        row = await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
    assert runs == [1]
    assert (row.attempt, row.recoveries) == (1, 0)


# -- graceful shutdown ----------------------------------------------------------------------------


async def test_stop_lets_short_tasks_finish_and_hands_long_ones_back(make_manager, database_url: str) -> None:
    first = make_manager(shutdown_timeout=0.5)
    release = asyncio.Event()
    started: list[str] = []  # names, as each task starts

    def register(manager: TaskManager) -> dict[str, Any]:
        @manager.task(persist=True, name="short")
        async def short() -> str:
            started.append("short")
            await asyncio.sleep(0.1)
            return "short"

        @manager.task(persist=True, name="long")
        async def long() -> str:
            started.append("long")
            await release.wait()
            return "long"

        @manager.task(name="fleeting")
        async def fleeting() -> None:
            started.append("fleeting")
            await release.wait()

        return {"short": short, "long": long, "fleeting": fleeting}

    tasks = register(first)
    await first.start()
    ids = {name: first.enqueue(func) for name, func in tasks.items()}
    await eventually(lambda: len(started) == 3)
    await first.stop()
    rows = {name: first.store.get(task_id) for name, task_id in ids.items()}
    assert rows["short"].status == TaskStatus.SUCCESS.value
    assert (rows["long"].status, rows["long"].owner, rows["long"].recoveries) == (TaskStatus.PENDING.value, None, 0)
    assert rows["fleeting"].status == TaskStatus.INTERRUPTED.value
    # The attempts the shutdown cut short are recorded with the release, under the instance that ran them.
    attempts = {name: [(a.number, a.status, a.owner) for a in first.store.attempts(ids[name])] for name in ids}
    assert attempts == {
        "short": [],
        "long": [(1, "released", first.owner)],
        "fleeting": [(1, "interrupted", first.owner)],
    }

    second = make_manager()
    register(second)
    release.set()
    async with second.lifespan():
        row = await wait_for_status(second, ids["long"], TaskStatus.SUCCESS, timeout=10)
    assert json.loads(row.result) == "long"


async def test_a_task_released_at_shutdown_starts_on_a_live_instance_within_its_poll_interval(
    make_manager,
) -> None:
    # The survivor's recovery sweep comes every lease/2 (here 30s): only the released-row claim
    # of its control loop, every poll_interval, can start the task within the deadline below.
    poll = 0.2
    survivor = make_manager(lease_seconds=60, poll_interval=poll)
    leaving = make_manager(lease_seconds=60, shutdown_timeout=0.2)
    finish_now = asyncio.Event()

    def register(manager: TaskManager) -> Any:
        @manager.task(persist=True, name="long")
        async def long() -> str:
            await finish_now.wait()
            return "done"

        return long

    register(survivor)
    long = register(leaving)
    async with survivor.lifespan():
        await leaving.start()
        task_id = leaving.enqueue(long)
        await wait_for_status(leaving, task_id, TaskStatus.RUNNING)
        await leaving.stop()
        row = await wait_for_status(survivor, task_id, TaskStatus.RUNNING, timeout=20)
        released = survivor.store.attempts(task_id)
        assert [(a.number, a.status, a.owner) for a in released] == [(1, "released", leaving.owner)]
        assert row.owner == survivor.owner and row.attempt == 2
        waited = (row.started_at - released[0].finished_at).total_seconds()
        assert waited < poll + 2.0, f"the released task started {waited:.2f}s after its release"
        finish_now.set()
        row = await wait_for_status(survivor, task_id, TaskStatus.SUCCESS)
    assert (row.attempt, row.recoveries, row.retries_used) == (2, 0, 0)
    assert [a.status for a in survivor.store.attempts(task_id)] == ["released", TaskStatus.SUCCESS.value]


# -- helpers --------------------------------------------------------------------------------------


def finish(task_id: str, attempt: int, owner: str) -> Finish:
    now = utcnow()
    values = {"status": TaskStatus.SUCCESS.value, "finished_at": now, "result": json.dumps(owner)}
    attempt_row = {"task_id": task_id, "number": attempt, "owner": owner, "status": TaskStatus.SUCCESS.value}
    return Finish(task_id=task_id, attempt=attempt, values=values, attempt_row=attempt_row | _times(now))


def _times(now: datetime) -> dict[str, Any]:
    empty = dict.fromkeys(("error_type", "error_message", "traceback", "logs"))
    return {"started_at": now, "finished_at": now, "duration": 0.0, **empty}
