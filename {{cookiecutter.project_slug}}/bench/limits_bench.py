"""What a concurrency limit costs a drain: 10,000 persisted no-op tasks waiting ownerless, run by
one instance with `max_concurrent` against the same tasks with no limit.

    python -m bench.limits_bench [--tasks 10000] [--concurrency 10] [--rounds 1] [--postgres URL]

Each round plants N pending ownerless rows (as an enqueue-only process leaves them), starts a
TaskManager with `concurrency` workers and the no-op task registered with
`max_concurrent=concurrency` (limited) or without (plain), and times from the start to every
task run. The two runs alternate; prints both rates (median of the rounds) and their ratio. On a
fresh SQLite file and, with --postgres, on a fresh PostgreSQL database too.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from sqlalchemy import insert

from app.taskflow import TaskManager
from app.taskflow.models import TaskRecord, new_task_row, utcnow
from tests.taskflow.services import postgres_database

TASKS = TaskRecord.__table__  # type: ignore[attr-defined]


def plant(manager: TaskManager, count: int) -> None:
    now = utcnow()
    rows = [new_task_row(id=str(uuid.uuid4()), name="noop", persist=True, created_at=now) for _ in range(count)]
    with manager.store.writing() as connection:
        connection.execute(insert(TASKS), rows)


async def drain_rate(database_url: str, count: int, concurrency: int, *, limited: bool) -> float:
    """Tasks a second from start() to the last task run (each task tells when it ran)."""
    manager = TaskManager(database_url=database_url, concurrency=concurrency, lease_seconds=30, poll_interval=0.05)
    ran = 0
    all_ran = asyncio.Event()
    limits = {"max_concurrent": concurrency} if limited else {}

    @manager.task(persist=True, name="noop", **limits)
    async def noop() -> None:
        nonlocal ran
        ran += 1
        if ran == count:
            all_ran.set()

    plant(manager, count)
    began = time.perf_counter()
    await manager.start()
    try:
        async with asyncio.timeout(600):
            await all_ran.wait()
        elapsed = time.perf_counter() - began
    finally:
        await manager.stop()
        manager.store.dispose()
    return count / elapsed


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite:///{Path(folder) / 'bench.db'}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--postgres", default=None, help="server URL (a fresh database is made on it)")
    options = parser.parse_args()
    engines: list[tuple[str, Callable[[], AbstractContextManager[str]]]] = [("sqlite", sqlite_database)]
    if options.postgres:
        engines.append(("postgresql", lambda: postgres_database(options.postgres)))
    for engine, database in engines:
        plain: list[float] = []
        limited: list[float] = []
        for _ in range(options.rounds):
            for rates, is_limited in ((plain, False), (limited, True)):
                with database() as url:
                    rates.append(await drain_rate(url, options.tasks, options.concurrency, limited=is_limited))
        plain_rate, limited_rate = statistics.median(plain), statistics.median(limited)
        print(
            f"{engine:<10} drain of {options.tasks} tasks, concurrency {options.concurrency}, median of "
            f"{options.rounds}: no limit {plain_rate:,.0f} tasks/s | max_concurrent={options.concurrency} "
            f"{limited_rate:,.0f} tasks/s | ratio {limited_rate / plain_rate:.2f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
