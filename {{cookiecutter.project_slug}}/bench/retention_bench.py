"""What deleting old finished tasks costs: one retention chunk, timed, as the table grows.

    python -m bench.retention_bench [--sizes 100000 300000]

For each size, a fresh SQLite file is filled with that many finished tasks (taskflow's UUID4
ids), then emptied by the retention's own chunks (`Store.delete_finished_before`, CHUNK rows
per transaction). On SQLite every write of the process waits while a chunk runs, a persisted
enqueue among them, so the time of one chunk is the figure that matters. Prints the median and
the longest chunk, and the rows deleted per second.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from app.taskflow.background import new_task_id
from app.taskflow.models import utcnow
from app.taskflow.retention import CHUNK
from app.taskflow.store import open_store

from .writer_bench import grow


def chunk_times(path: Path, rows: int) -> list[float]:
    """Seconds of each chunk that emptied a table of `rows` finished tasks."""
    store = open_store(f"sqlite:///{path}")
    store.create_tables()
    try:
        grow(store, rows, new_task_id)
        cutoff = utcnow() + timedelta(seconds=1)  # every planted task finished before it
        times: list[float] = []
        deleted = CHUNK
        while deleted == CHUNK:
            start = time.perf_counter()
            deleted = store.delete_finished_before(cutoff, limit=CHUNK)
            times.append(time.perf_counter() - start)
        return times
    finally:
        store.database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes:
            times = chunk_times(Path(folder) / f"retention-{size}.db", size)
            median, longest = statistics.median(times) * 1e3, max(times) * 1e3
            print(
                f"retention, {size:7d} finished tasks, chunks of {CHUNK}: median {median:5.1f} ms"
                f" | longest {longest:5.1f} ms | {size / sum(times):8.0f} rows deleted/s"
            )


if __name__ == "__main__":
    main()
