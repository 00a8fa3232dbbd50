"""Admin benchmark: list latency, live-event rate and memory with up to 1,000,000 task rows.

    python -m bench.admin_bench [--rows 1000000] [--samples 60] [--keep PATH]

Fills a SQLite file (executemany in big transactions: a realistic mix of statuses and names)
in stages of 10,000, 100,000 and 1,000,000 rows. At each stage, in one process through
httpx.ASGITransport, it measures p50/p95 of the first page of `GET /tasks` and of the
dashboard's table fragment, unfiltered and filtered by status, and the process RSS. At the
end, 1,000 task events a second are published for a few seconds while a dashboard stream
(the same RowStream the `/dashboard/events` route runs) is subscribed: it prints the
messages that client receives per second and their size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request

from app.taskflow import TaskAdmin, TaskManager
from app.taskflow.admin.auth import Principal, Role
from app.taskflow.admin.sse import RowStream, View
from app.taskflow.events import TaskEvent
from app.taskflow.store import TaskFilter

USER = ("admin", "bench-password")
STATUSES = [("success", 85), ("failed", 8), ("pending", 3), ("running", 1), ("cancelled", 2), ("interrupted", 1)]
NAMES = [
    ("send_email", 40),
    ("build_report", 10),
    ("resize_image", 20),
    ("sync_crm", 10),
    ("charge_card", 8),
    ("flaky", 5),
    ("cleanup", 5),
    ("notify_webhook", 2),
]
COLUMNS = (
    "id, name, status, arguments, persist, idempotency_key, attempt, max_attempts, retries_used, recoveries, owner, "
    "lease_expires_at, cancel_requested, created_at, updated_at, started_at, finished_at, next_run_at, "
    "error_type, error_message, traceback, result, progress_done, progress_total, progress_message, retry_of"
)


def sqlite_time(value: datetime) -> str:
    # The text SQLAlchemy's SQLite DateTime stores: UTC, no offset, always microseconds.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def fill(path: Path, *, start: int, stop: int, total: int, chunk: int = 50_000) -> None:
    """Rows start..stop of `total`, oldest first, created over the last 30 days."""
    statuses = random.choices([s for s, _ in STATUSES], [w for _, w in STATUSES], k=stop - start)
    names = random.choices([n for n, _ in NAMES], [w for _, w in NAMES], k=stop - start)
    now = datetime.now(UTC)
    span = timedelta(days=30).total_seconds()
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA synchronous=OFF")
    placeholders = ", ".join("?" * len(COLUMNS.split(",")))
    for low in range(start, stop, chunk):
        rows = []
        for n in range(low, min(stop, low + chunk)):
            status, name = statuses[n - start], names[n - start]
            created = now - timedelta(seconds=span * (1 - n / total))
            started = created + timedelta(milliseconds=random.randint(1, 50))
            finished = started + timedelta(milliseconds=random.lognormvariate(4, 1))
            final = status not in ("pending", "running")
            failed = status == "failed"
            rows.append(
                (
                    str(uuid.uuid4()), name, status, json.dumps({"args": [], "kwargs": {"user_id": n}}), 0, None,
                    0 if status == "pending" else 1, 4 if name == "flaky" else 1, 0, 0, None if final else "bench:1",
                    None, 0, sqlite_time(created), sqlite_time(finished if final else created),
                    None if status == "pending" else sqlite_time(started), sqlite_time(finished) if final else None,
                    None, "ConnectionError" if failed else None,
                    "the upstream service dropped the connection" if failed else None,
                    "Traceback (most recent call last): ..." if failed else None,
                    '"ok"' if status == "success" else None, None, None, None, None,
                )
            )  # fmt: skip
        with connection:
            connection.executemany(f"INSERT INTO taskflow_tasks ({COLUMNS}) VALUES ({placeholders})", rows)
    connection.close()


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * len(ordered)) - 1)]


async def timed(client: httpx.AsyncClient, url: str, samples: int) -> tuple[float, float, str]:
    for _ in range(3):  # warm up: connections, statement cache, templates
        await client.get(url)
    times = []
    for _ in range(samples):
        began = time.perf_counter()
        response = await client.get(url)
        times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    p50, p95 = percentiles(times)
    return p50, p95, response.headers.get("X-Total-Count", "")


URLS = {
    "GET /tasks": "/tasks?limit=50",
    "GET /tasks?status=failed": "/tasks?limit=50&status=failed",
    "GET /tasks?status=running": "/tasks?limit=50&status=running",
    "table fragment": "/tasks/dashboard/partials/table",
    "table fragment ?status=failed": "/tasks/dashboard/partials/table?status=failed",
}


async def measure_lists(app: FastAPI, samples: int) -> dict[str, tuple[float, float, str]]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", auth=USER) as client:
        results = {label: await timed(client, url, samples) for label, url in URLS.items()}
    # The metrics snapshot (whole-table counts + bounded windows), uncached; the admin caches it 2 s.
    insights = app.state.taskflow_admin.service.insights
    times = []
    for _ in range(5):
        insights.invalidate()
        began = time.perf_counter()
        await asyncio.to_thread(insights.snapshot)
        times.append((time.perf_counter() - began) * 1000)
    results["metrics snapshot (uncached)"] = (*percentiles(times), "")
    return results


async def measure_events(app: FastAPI, manager: TaskManager, path: Path, *, seconds: float = 5.0) -> dict[str, float]:
    """1,000 events a second for real task ids (newest first, like a busy system) -> one client's stream."""
    admin = app.state.taskflow_admin
    with sqlite3.connect(path) as connection:
        newest = [
            row[0] for row in connection.execute("SELECT id FROM taskflow_tasks ORDER BY created_at DESC LIMIT 200")
        ]
        sample = [row[0] for row in connection.execute("SELECT id FROM taskflow_tasks ORDER BY random() LIMIT 2000")]
    request = Request({"type": "http", "app": app, "router": app.router, "headers": [], "query_string": b""})
    principal = Principal(USER[0], Role.ADMIN, via="basic")

    def render(rows: list[Any], replace: bool, waiting: dict[str, Any]) -> str:
        context = {"rows": rows, "mode": "body" if replace else "rows", "waiting": waiting}
        return admin.renderer.fragment(request, "partials/dashboard_rows.html", context, principal=principal)

    stop = asyncio.Event()
    stream = RowStream(
        service=admin.service, bus=manager.events, stop=stop, view=View(task_filter=TaskFilter()), render=render
    )
    received: list[tuple[float, int]] = []
    connected = asyncio.Event()

    async def client() -> None:
        async for message in stream.events():
            if message.event is not None:
                received.append((time.perf_counter(), len(message.raw_data or message.data or "")))
                connected.set()  # the first event is the page's snapshot, sent once subscribed

    consumer = asyncio.create_task(client())
    await connected.wait()
    published = 0
    began = time.perf_counter()
    while (elapsed := time.perf_counter() - began) < seconds:
        due = int(elapsed * 1000) - published
        for _ in range(due):  # half the changes hit rows on the first page, half anywhere
            task_id = random.choice(newest) if published % 2 else random.choice(sample)
            manager.events.publish(TaskEvent(task_id, "send_email", "running", progress_done=published % 100))
            published += 1
        await asyncio.sleep(0.01)
    duration = time.perf_counter() - began
    await asyncio.sleep(0.6)  # the last window
    stop.set()
    await asyncio.wait_for(consumer, 5)
    # Neither the snapshot before the load nor the drain after it.
    during = [size for at, size in received if began <= at <= began + duration]
    sizes = [size for _, size in received]
    return {
        "published_per_second": published / duration,
        "messages_per_second": len(during) / duration,
        "mean_message_bytes": statistics.mean(sizes) if sizes else 0.0,
        "max_message_bytes": max(sizes) if sizes else 0.0,
    }


def build(path: Path) -> tuple[FastAPI, TaskManager]:
    manager = TaskManager(database_url=f"sqlite:///{path}")
    app = FastAPI()
    TaskAdmin(app, manager, username=USER[0], password=USER[1], secret_key="bench")
    return app, manager


def run(rows: int, samples: int, keep: Path | None) -> None:
    folder = Path(tempfile.mkdtemp(prefix="admin-bench-"))
    path = keep or folder / "tasks.db"
    try:
        asyncio.run(run_in(path, rows, samples))
        print(f"database: {path.name} ({path.stat().st_size / 2**20:.0f} MiB)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # hundreds of MiB: only a --keep file stays


async def run_in(path: Path, rows: int, samples: int) -> None:
    app, manager = build(path)
    stages = [size for size in (10_000, 100_000, 1_000_000) if size < rows] + [rows]
    results: list[tuple[int, float, dict[str, tuple[float, float, str]]]] = []
    async with app.router.lifespan_context(app):
        filled = 0
        for stage in stages:
            began = time.perf_counter()
            fill(path, start=filled, stop=stage, total=rows)
            print(f"filled {stage:>9,} rows (+{stage - filled:,} in {time.perf_counter() - began:.1f} s)", flush=True)
            filled = stage
            lists = await measure_lists(app, samples)
            results.append((stage, rss_mib(), lists))
        events = await measure_events(app, manager, path)
    manager.store.dispose()

    print()
    print(f"{'rows':>10}  {'RSS MiB':>8}  {'request':<32} {'p50 ms':>7} {'p95 ms':>7}  X-Total-Count")
    for stage, rss, lists in results:
        for label, (p50, p95, total) in lists.items():
            print(f"{stage:>10,}  {rss:>8.1f}  {label:<32} {p50:>7.2f} {p95:>7.2f}  {total}")
    print()
    print(f"events published: {events['published_per_second']:.0f}/s")
    print(f"stream messages to one client: {events['messages_per_second']:.2f}/s (target <= 4)")
    print(f"message size: mean {events['mean_message_bytes']:.0f} B, max {events['max_message_bytes']:.0f} B")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--keep", type=Path, default=None, help="fill this SQLite file instead of a temporary one")
    arguments = parser.parse_args()
    random.seed(7)
    run(arguments.rows, arguments.samples, arguments.keep)


if __name__ == "__main__":
    main()
