"""Time to recover after a crash: 10,000 persisted tasks left behind by a dead instance.

    python -m bench.recovery_bench [--tasks 10000] [--rounds 3] [--postgres URL | --no-postgres]

Each round plants N pending, persisted no-op tasks owned by an instance that is gone (its
leases expired), starts a TaskManager with the no-op task registered, and measures from the
start call to: the first task started, every task started (claimed, so `started_at` is set,
and running), and every row SUCCESS in the database. Runs on a fresh SQLite file and, when the
server answers, on a fresh PostgreSQL database. The target is under 2 s to "started" on SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

from app.taskflow import TaskManager
from app.taskflow.models import TaskRecord, TaskStatus, new_task_row, utcnow
from tests.taskflow.services import postgres_database, postgres_reachable

TASKS = TaskRecord.__table__  # type: ignore[attr-defined]
GONE = "crashed-host:4242:deadbeef"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@dataclass
class Timings:
    first_started: float
    started: float
    succeeded: float


def plant(manager: TaskManager, count: int) -> None:
    """Rows as a killed instance leaves them: pending, persisted, owned by it, lease expired."""
    now = utcnow()
    expired = now - timedelta(seconds=1)
    rows = [
        new_task_row(
            id=str(uuid.uuid4()), name="noop", persist=True, owner=GONE, lease_expires_at=expired, created_at=now
        )
        for _ in range(count)
    ]
    with manager.store.writing() as connection:
        connection.execute(insert(TASKS), rows)


def finished_counts(manager: TaskManager) -> tuple[int, int, int]:
    """(owned by this instance, started, succeeded), read once at the end to check the run."""
    mine = func.count().filter(TASKS.c.owner == manager.owner)
    started = func.count(TASKS.c.started_at)
    succeeded = func.count().filter(TASKS.c.status == TaskStatus.SUCCESS.value)
    with manager.store.reading() as connection:
        row = connection.execute(select(mine, started, succeeded).select_from(TASKS)).one()
    return int(row[0]), int(row[1]), int(row[2])


async def one_round(database_url: str, count: int) -> Timings:
    """Clock from start(): a task body runs only after its claim committed, so the task itself
    tells when the last one started; polling the table would slow down what it measures."""
    manager = TaskManager(database_url=database_url, lease_seconds=30, poll_interval=0.05)
    started: list[float] = []
    all_started = asyncio.Event()

    @manager.task(persist=True, name="noop")
    async def noop() -> None:
        started.append(time.perf_counter())
        if len(started) == count:
            all_started.set()

    plant(manager, count)
    began = time.perf_counter()
    await manager.start()
    try:
        async with asyncio.timeout(120):
            await all_started.wait()
            await manager.wait_idle()  # every outcome written
        succeeded_at = time.perf_counter()
        owned, with_start, succeeded = await asyncio.to_thread(finished_counts, manager)
    finally:
        await manager.stop()
        manager.store.dispose()
    if (owned, with_start, succeeded) != (count, count, count):
        raise AssertionError(f"expected {count} each: owned {owned}, started {with_start}, succeeded {succeeded}")
    return Timings(first_started=started[0] - began, started=started[-1] - began, succeeded=succeeded_at - began)


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite:///{Path(folder) / 'bench.db'}"


def report(engine: str, count: int, rounds: list[Timings]) -> None:
    def median(field: str) -> float:
        return statistics.median(getattr(timing, field) for timing in rounds)

    print(
        f"{engine:<10} {count:>6} tasks, median of {len(rounds)}: "
        f"first started {median('first_started'):5.2f} s | all started {median('started'):5.2f} s | "
        f"all SUCCESS {median('succeeded'):6.2f} s ({count / median('succeeded'):,.0f} tasks/s)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="server URL (a fresh database is made on it)")
    parser.add_argument("--no-postgres", action="store_true")
    options = parser.parse_args()

    engines: list[tuple[str, object]] = [("sqlite", sqlite_database)]
    if not options.no_postgres:
        if postgres_reachable(options.postgres):
            engines.append(("postgresql", lambda: postgres_database(options.postgres)))
        else:
            print(f"postgresql skipped: {options.postgres} is not reachable")
    for engine, database in engines:
        rounds = []
        for _ in range(options.rounds):
            with database() as url:  # type: ignore[operator]
                rounds.append(await one_round(url, options.tasks))
        report(engine, options.tasks, rounds)


if __name__ == "__main__":
    asyncio.run(main())
