"""What the writer pays per finished task as taskflow_tasks grows, with random ids and ordered ones.

    python -m bench.writer_bench [--sizes 10000 100000 300000] [--batch 500] [--rounds 11]
                                 [--postgres URL | --no-postgres]

Task ids are random (UUID4, as the reference library's), so every new row lands on a random
page of the primary key's b-tree; on SQLite every page a batch touches is written to the WAL
whole at its commit (then copied again by the checkpoint). The table itself and its time
indexes only grow at their ends. This grows two fresh databases side by side to each size in
turn and times the writer's transaction (`Store.apply`, the rows' driver form included) for
batches of finished no-op tasks, in alternation: one with taskflow's UUID4 ids, one with
time-ordered ids (UUIDv7's layout), which the API does not use (the reference returns UUID4s).
Prints microseconds per row, the median of `--rounds` batches per size, and the ratio of the
two; on SQLite files and, when the server answers, on fresh PostgreSQL databases.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from app.taskflow.background import new_task_id
from app.taskflow.models import TaskStatus, new_task_row, utcnow
from app.taskflow.store import Batch, Store, open_store
from tests.taskflow.services import postgres_database, postgres_reachable

from .recovery_bench import DEFAULT_POSTGRES

OWNER = "bench-host:1:writer"
GROW_BATCH = 5000


def time_ordered_id() -> str:
    """A UUIDv7-layout id: 48 bits of milliseconds, then random bits (the alternative not taken)."""
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70  # version 7
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 9562 variant
    # Made before a batch is timed, so the uuid module's formatting costs nothing here.
    return str(uuid.UUID(bytes=bytes(raw)))


def finished_rows(count: int, make_id: Callable[[], str]) -> list[dict[str, Any]]:
    """Rows as the writer inserts a short task that succeeded at its first attempt (every column)."""
    rows = []
    for _ in range(count):
        now = utcnow()
        rows.append(
            new_task_row(
                id=make_id(),
                name="noop",
                status=TaskStatus.SUCCESS.value,
                attempt=1,
                max_attempts=1,
                owner=OWNER,
                created_at=now,
                started_at=now,
                finished_at=now,
            )
        )
    return rows


def grow(store: Store, rows: int, make_id: Callable[[], str]) -> None:
    while rows > 0:
        size = min(rows, GROW_BATCH)
        store.apply(Batch(inserts=finished_rows(size, make_id)), owner=OWNER)
        rows -= size
    # As a running service's checkpoints would have: the grown rows leave the WAL.
    checkpointer = getattr(store.database, "checkpointer", None)  # SQLite's
    if checkpointer is not None:
        checkpointer.start()
        checkpointer.close()  # waits for it
    else:
        with store.writing() as connection:
            connection.exec_driver_sql("CHECKPOINT")


def timed_batch(store: Store, make_id: Callable[[], str], rows: int) -> float:
    """Microseconds per row of one writer transaction of `rows` finished tasks."""
    batch = Batch(inserts=finished_rows(rows, make_id))
    start = time.perf_counter()
    store.apply(batch, owner=OWNER)
    return (time.perf_counter() - start) / rows * 1e6


@contextlib.contextmanager
def sqlite_pair(folder: Path) -> Iterator[tuple[str, str]]:
    yield f"sqlite:///{folder / 'writer-uuid4.db'}", f"sqlite:///{folder / 'writer-ordered.db'}"


@contextlib.contextmanager
def postgres_pair(server: str) -> Iterator[tuple[str, str]]:
    with postgres_database(server) as first, postgres_database(server) as second:
        yield first, second


def per_row_costs(urls: tuple[str, str], args: argparse.Namespace) -> list[tuple[int, float, float]]:
    """(size, UUID4 us/row, time-ordered us/row) at each size: two databases grown side by side,
    their batches timed in alternation so that machine noise hits both alike."""
    kinds = (new_task_id, time_ordered_id)
    stores = [open_store(url) for url in urls]
    results = []
    try:
        for store in stores:
            store.create_tables()
        in_table = 0
        for size in args.sizes:
            timings: list[list[float]] = [[], []]
            for store, make_id in zip(stores, kinds, strict=True):
                grow(store, size - in_table, make_id)
            for _ in range(args.rounds):
                for index, (store, make_id) in enumerate(zip(stores, kinds, strict=True)):
                    timings[index].append(timed_batch(store, make_id, args.batch))
            in_table = size + args.rounds * args.batch
            results.append((size, statistics.median(timings[0]), statistics.median(timings[1])))
    finally:
        for store in stores:
            store.database.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 300_000])
    parser.add_argument("--batch", type=int, default=500, help="finished tasks per writer transaction")
    parser.add_argument("--rounds", type=int, default=11, help="batches timed at each size")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="server URL (fresh databases are made on it)")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    if sorted(args.sizes) != args.sizes or args.sizes[0] < 0:
        parser.error("--sizes must be non-negative and in increasing order (one database grows through them)")
    with tempfile.TemporaryDirectory() as folder:
        engines: list[tuple[str, contextlib.AbstractContextManager[tuple[str, str]]]] = [
            ("sqlite", sqlite_pair(Path(folder)))
        ]
        if not args.no_postgres:
            if postgres_reachable(args.postgres):
                engines.append(("postgresql", postgres_pair(args.postgres)))
            else:
                print(f"postgresql skipped: {args.postgres} is not reachable")
        for engine, pair in engines:
            with pair as urls:
                results = per_row_costs(urls, args)
            for size, random_cost, ordered_cost in results:
                print(
                    f"writer {engine}, {size:7d} rows in the table, batches of {args.batch}: UUID4 ids "
                    f"{random_cost:5.1f} us/row | time-ordered ids {ordered_cost:5.1f} us/row "
                    f"| ratio {random_cost / ordered_cost:.1f}"
                )


if __name__ == "__main__":
    main()
