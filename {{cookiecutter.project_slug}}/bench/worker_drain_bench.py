"""Worker processes draining a backlog: 20,000 queued no-op persisted tasks on PostgreSQL.

    python -m bench.worker_drain_bench [--tasks 20000] [--workers 1 2 4] [--concurrency 32] [--postgres URL]

For each worker count: a fresh PostgreSQL database; that many worker processes
(`app.taskflow.worker.run_worker`, as `python -m app.worker` runs it) started and idle; then N
ownerless PENDING persisted rows committed at once, as an enqueue-only web process leaves them.
The clock runs from that commit until every row is SUCCESS. Prints tasks/s for each count, its
ratio to one worker, and the machine's CPU count (workers past it share cores).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import func, insert, select

from app.taskflow import TaskManager
from app.taskflow.models import TaskRecord, TaskStatus, new_task_row, utcnow
from app.taskflow.worker import run_worker
from tests.taskflow.services import postgres_database, postgres_reachable

TASKS = TaskRecord.__table__  # type: ignore[attr-defined]
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SERVICE_ROOT = Path(__file__).resolve().parents[1]
READY = "running tasks"  # in the worker's start line (app/taskflow/worker.py)
POLL = 0.05  # how often the clock reads the table, and the workers' idle poll


def noop_manager(database_url: str, concurrency: int) -> TaskManager:
    manager = TaskManager(database_url=database_url, concurrency=concurrency, poll_interval=POLL)

    @manager.task(persist=True, name="noop")
    async def noop() -> None:
        return None

    return manager


def worker_main(database_url: str, concurrency: int) -> None:
    """One worker process: log to stderr (the parent waits for its start line) and run."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("taskflow.worker").setLevel(logging.INFO)
    asyncio.run(run_worker(noop_manager(database_url, concurrency)))


def plant(manager: TaskManager, count: int) -> None:
    """N ownerless rows committed in one transaction, as an enqueue-only process leaves them."""
    now = utcnow()
    rows = [new_task_row(id=str(uuid.uuid4()), name="noop", persist=True, created_at=now) for _ in range(count)]
    with manager.store.writing() as connection:
        connection.execute(insert(TASKS), rows)


def succeeded(manager: TaskManager) -> int:
    with manager.store.reading() as connection:
        statement = select(func.count()).select_from(TASKS).where(TASKS.c.status == TaskStatus.SUCCESS.value)
        return int(connection.execute(statement).scalar_one())


def start_workers(database_url: str, workers: int, concurrency: int, folder: Path) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "PYTHONPATH": str(SERVICE_ROOT)}
    command = [sys.executable, "-m", "bench.worker_drain_bench", "--worker", database_url]
    command += ["--concurrency", str(concurrency)]
    processes = []
    for number in range(workers):
        with (folder / f"worker-{number}.log").open("wb") as log:
            processes.append(subprocess.Popen(command, cwd=SERVICE_ROOT, env=env, stdout=log, stderr=log))
    deadline = time.monotonic() + 60
    for number, process in enumerate(processes):
        log_path = folder / f"worker-{number}.log"
        while READY not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {number} did not start:\n{log_path.read_text(errors='replace')}")
            time.sleep(POLL)
    return processes


def stop_workers(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def one_run(server_url: str, tasks: int, workers: int, concurrency: int) -> float:
    """Seconds from the commit of `tasks` ownerless rows until all are SUCCESS, with `workers` processes."""
    with postgres_database(server_url) as url, tempfile.TemporaryDirectory() as folder:
        manager = noop_manager(url, concurrency)
        manager.store.create_tables()  # once, before the workers start on it
        processes = start_workers(url, workers, concurrency, Path(folder))
        try:
            began = time.perf_counter()
            plant(manager, tasks)
            deadline = began + 600
            while succeeded(manager) < tasks:
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{tasks} tasks not drained within 600 s")
                time.sleep(POLL)
            return time.perf_counter() - began
        finally:
            stop_workers(processes)
            manager.store.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--concurrency", type=int, default=32, help="tasks at once in each worker")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="server URL (a fresh database is made on it)")
    parser.add_argument("--worker", metavar="DATABASE_URL", help=argparse.SUPPRESS)  # a worker process's own run
    options = parser.parse_args()
    if options.worker:
        worker_main(options.worker, options.concurrency)
        return
    if not postgres_reachable(options.postgres):
        sys.exit(f"PostgreSQL is not reachable at {options.postgres} (set --postgres)")
    print(f"cpu count: {os.cpu_count()}")
    baseline = None
    for workers in options.workers:
        seconds = one_run(options.postgres, options.tasks, workers, options.concurrency)
        rate = options.tasks / seconds
        baseline = baseline or rate
        print(
            f"{workers} worker(s): {options.tasks} tasks in {seconds:.2f} s, {rate:,.0f} tasks/s | "
            f"ratio to {options.workers[0]} worker(s) {rate / baseline:.2f}"
        )


if __name__ == "__main__":
    main()
