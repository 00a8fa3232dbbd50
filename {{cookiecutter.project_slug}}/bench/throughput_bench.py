"""Request throughput with a managed no-op task against plain FastAPI BackgroundTasks.

    python -m bench.throughput_bench [--requests 3000] [--rounds 5] [--concurrency 16]
    python -m bench.throughput_bench --per-task     # microseconds per task of each step
    python -m bench.throughput_bench --compare-intake --rounds 7  # persist=True's commit: with, without
    python -m bench.throughput_bench --interleave   # only the interleaved rounds (see below);
                                                    # with --compare-intake, its rounds interleaved
    python -m bench.throughput_bench --drain-only   # only the drain of 10,000 queued tasks
    python -m bench.throughput_bench --patterns     # each way of getting ManagedBackgroundTasks
    python -m bench.throughput_bench --patterns --sync-routes   # the same with `def` routes
    python -m bench.throughput_bench --patterns --only "native annotation" "Depends(get_tasks)"

Both apps are driven in one process through httpx.ASGITransport, alternating rounds so
machine noise hits both alike.

Each figure comes in two drives. Back to back: nothing in ASGITransport's path suspends, so
the first of the `--concurrency` client coroutines serves every request of a round, the event
loop runs nothing else meanwhile, and the tasks run after the last response. Interleaved:
each request first yields to the loop once, as a server's read from its socket does, so the
clients take turns, and tasks and taskflow's writer thread work while requests are served (as in
a server). The second is the one a deployment sees; the first is the harness as the issue
specifies it. For the managed app the clock stops only when every enqueued
task has reached SUCCESS in the database. Prints req/s of each and the ratio managed/plain,
for persist=False and persist=True (SQLite file); then the floor for persist=True measured the
same way (plain BackgroundTasks plus one SQLite INSERT and COMMIT per request); then tasks
drained per second for 10,000 queued no-op tasks against plain BackgroundTasks, with the
longest the event loop kept another coroutine waiting for its turn meanwhile (a request
arriving during the drain waits that long).

--patterns compares the ways a route gets its ManagedBackgroundTasks, each in an app of its own
(own manager, own SQLite file) with TaskAdmin mounted as the generated service mounts it: the
native `BackgroundTasks` annotation, the `ManagedBackgroundTasks` annotation,
`Depends(task_manager.get_tasks)` and its alias `Depends(task_manager.background_tasks)`. Each
round drives plain BackgroundTasks, then every pattern in an order that rotates from round to
round; it prints each pattern's median req/s, its ratio beside plain and this process's CPU
time per request, in both drives, and how far apart the patterns are.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from fastapi import BackgroundTasks, Depends, FastAPI
from sqlalchemy import func, select

from app.taskflow import ManagedBackgroundTasks, TaskAdmin, TaskManager
from app.taskflow.models import TaskRecord, TaskStatus


async def noop() -> None:
    return None


def plain_app(*, sync_route: bool = False) -> FastAPI:
    app = FastAPI()

    if sync_route:

        @app.post("/work")
        def work_in_thread(background_tasks: BackgroundTasks) -> dict[str, str]:
            background_tasks.add_task(noop)
            return {"task_id": "-"}

        return app

    @app.post("/work")
    async def work(background_tasks: BackgroundTasks) -> dict[str, str]:
        background_tasks.add_task(noop)
        return {"task_id": "-"}

    return app


def floor_app(path: Path) -> FastAPI:
    """Plain BackgroundTasks plus one SQLite INSERT and COMMIT per request: the cost of durability."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("CREATE TABLE IF NOT EXISTS requests (id TEXT PRIMARY KEY, created_at TEXT NOT NULL)")
    app = FastAPI()

    @app.post("/work")
    async def work(background_tasks: BackgroundTasks) -> dict[str, str]:
        task_id = str(uuid.uuid4())
        connection.execute("BEGIN")
        connection.execute("INSERT INTO requests VALUES (?, datetime('now'))", (task_id,))
        connection.execute("COMMIT")
        background_tasks.add_task(noop)
        return {"task_id": task_id}

    return app


def managed_app(manager: TaskManager, task: Callable[[], Awaitable[None]]) -> FastAPI:
    app = FastAPI()

    @app.post("/work")
    async def work(background_tasks: BackgroundTasks) -> dict[str, str]:
        return {"task_id": background_tasks.add_task(task)}

    # After the app's own routes, as in the generated service: requests to them never try the
    # admin's routes first.
    TaskAdmin(app, manager, auto_install=True, username="bench", password="bench")
    return app


PATTERNS = ("native annotation", "managed annotation", "Depends(get_tasks)", "Depends(background_tasks)")


def pattern_app(
    manager: TaskManager, task: Callable[[], Awaitable[None]], pattern: str, *, sync_routes: bool
) -> FastAPI:
    """A route that gets its ManagedBackgroundTasks by `pattern`, then TaskAdmin as the generated
    service mounts it."""

    def native(background_tasks: BackgroundTasks) -> dict[str, str]:
        return {"task_id": background_tasks.add_task(task)}

    def managed(background_tasks: ManagedBackgroundTasks) -> dict[str, str]:
        return {"task_id": background_tasks.add_task(task)}

    def get_tasks(tasks: ManagedBackgroundTasks = Depends(manager.get_tasks)) -> dict[str, str]:
        return {"task_id": tasks.add_task(task)}

    def alias(tasks: ManagedBackgroundTasks = Depends(manager.background_tasks)) -> dict[str, str]:
        return {"task_id": tasks.add_task(task)}

    route = dict(zip(PATTERNS, (native, managed, get_tasks, alias), strict=True))[pattern]
    app = FastAPI()
    app.post("/work")(route if sync_routes else _as_async(route))
    TaskAdmin(app, manager, auto_install=True, username="bench", password="bench")
    return app


def _as_async(route: Callable[..., dict[str, str]]) -> Callable[..., Awaitable[dict[str, str]]]:
    """The same route as an `async def` (FastAPI then calls it on the event loop, no thread hop)."""

    async def handler(*args: object, **kwargs: object) -> dict[str, str]:
        return route(*args, **kwargs)

    handler.__signature__ = inspect.signature(route)  # type: ignore[attr-defined]
    handler.__name__ = route.__name__
    return handler


class InterleavedTransport(httpx.ASGITransport):
    """ASGITransport whose every request first lets the event loop run its other work once."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)
        return await super().handle_async_request(request)


async def drive(app: FastAPI, requests: int, concurrency: int, interleave: bool = False) -> None:
    transport = (InterleavedTransport if interleave else httpx.ASGITransport)(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        remaining = iter(range(requests))

        async def worker() -> None:
            for _ in remaining:
                response = await client.post("/work")
                response.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def succeeded(manager: TaskManager) -> int:
    statement = select(func.count()).select_from(TaskRecord).where(TaskRecord.status == TaskStatus.SUCCESS.value)
    with manager.store.reading() as connection:
        return int(connection.execute(statement).scalar_one())


async def timed_plain(requests: int, concurrency: int, app: FastAPI | None = None, interleave: bool = False) -> float:
    app = app or plain_app()
    start = time.perf_counter()
    await drive(app, requests, concurrency, interleave)
    return requests / (time.perf_counter() - start)


async def timed_managed(
    manager: TaskManager, app: FastAPI, requests: int, concurrency: int, interleave: bool = False
) -> float:
    before = await asyncio.to_thread(succeeded, manager)
    start = time.perf_counter()
    await drive(app, requests, concurrency, interleave)
    await manager.wait_idle(timeout=300)
    elapsed = time.perf_counter() - start
    await check_all_succeeded(manager, before, requests)
    return requests / elapsed


async def check_all_succeeded(manager: TaskManager, before: int, requests: int) -> None:
    """Exit unless `requests` more tasks reached SUCCESS than `before` (checked off the clock)."""
    done = await asyncio.to_thread(succeeded, manager) - before
    if done != requests:
        raise SystemExit(f"only {done} of {requests} tasks reached SUCCESS")


async def request_throughput(persist: bool, args: argparse.Namespace, folder: Path, interleave: bool) -> None:
    manager = TaskManager(database_url=f"sqlite:///{folder / f'bench-{persist}-{interleave}.db'}")
    task = manager.task(name="noop", persist=persist)(noop)
    app = managed_app(manager, task)
    plain_rates: list[float] = []
    managed_rates: list[float] = []
    async with app.router.lifespan_context(app):
        await timed_managed(manager, app, 200, args.concurrency)  # warm up both paths
        await timed_plain(200, args.concurrency)
        for _ in range(args.rounds):
            plain_rates.append(await timed_plain(args.requests, args.concurrency, interleave=interleave))
            managed_rates.append(await timed_managed(manager, app, args.requests, args.concurrency, interleave))
    plain, managed = statistics.median(plain_rates), statistics.median(managed_rates)
    label = "persist=True " if persist else "persist=False"
    print(
        f"requests {label} {_drive_label(interleave)}: plain {plain:8.0f} req/s | managed {managed:8.0f} req/s | "
        f"ratio {managed / plain:.2f} (median of {args.rounds} alternating rounds of {args.requests})"
    )


async def floor_throughput(args: argparse.Namespace, folder: Path, interleave: bool) -> None:
    """What one INSERT+COMMIT per request costs on this machine: the floor for persist=True."""
    floor = floor_app(folder / f"floor-{interleave}.db")
    plain_rates: list[float] = []
    floor_rates: list[float] = []
    await timed_plain(200, args.concurrency, floor)
    for _ in range(args.rounds):
        plain_rates.append(await timed_plain(args.requests, args.concurrency, interleave=interleave))
        floor_rates.append(await timed_plain(args.requests, args.concurrency, floor, interleave))
    plain, with_commit = statistics.median(plain_rates), statistics.median(floor_rates)
    print(
        f"floor (plain + 1 SQLite INSERT+COMMIT per request) {_drive_label(interleave)}: plain {plain:8.0f} req/s | "
        f"floor {with_commit:8.0f} req/s | ratio {with_commit / plain:.2f}"
    )


async def pattern_throughput(args: argparse.Namespace, folder: Path, interleave: bool) -> None:
    """Every injection pattern beside plain BackgroundTasks, in the same alternating rounds.

    Each pattern has its own manager and SQLite file, so the tables grow alike for all of them.
    """
    patterns = tuple(args.only or PATTERNS)
    apps: dict[str, tuple[TaskManager, FastAPI]] = {}
    for number, pattern in enumerate(patterns):
        manager = TaskManager(database_url=f"sqlite:///{folder / f'pattern-{number}-{interleave}.db'}")
        task = manager.task(name="noop")(noop)
        apps[pattern] = (manager, pattern_app(manager, task, pattern, sync_routes=args.sync_routes))
    names = ("plain", *patterns)
    rates: dict[str, list[float]] = {name: [] for name in names}
    # CPU time of this process (every thread) per request: less moved by other processes on a
    # shared machine than the wall clock, which a busy neighbour slows for whichever app runs.
    cpu: dict[str, list[float]] = {name: [] for name in names}
    async with contextlib.AsyncExitStack() as stack:
        for manager, app in apps.values():
            await stack.enter_async_context(app.router.lifespan_context(app))
            await timed_managed(manager, app, 200, args.concurrency)  # warm up every path
        plain = plain_app(sync_route=args.sync_routes)  # a `def` route too with --sync-routes: same thread hop
        await timed_plain(200, args.concurrency, plain)
        for round_number in range(args.rounds):
            started = time.process_time()
            rates["plain"].append(await timed_plain(args.requests, args.concurrency, plain, interleave))
            cpu["plain"].append((time.process_time() - started) / args.requests)
            shift = round_number % len(patterns)
            for pattern in patterns[shift:] + patterns[:shift]:
                manager, app = apps[pattern]
                started = time.process_time()
                rate = await timed_managed(manager, app, args.requests, args.concurrency, interleave)
                cpu[pattern].append((time.process_time() - started) / args.requests)
                rates[pattern].append(rate)
    for manager, _ in apps.values():
        manager.store.dispose()
    rate_of = {name: statistics.median(values) for name, values in rates.items()}
    cpu_of = {name: statistics.median(values) for name, values in cpu.items()}
    routes = "def" if args.sync_routes else "async def"
    print(
        f"patterns, {routes} routes, {_drive_label(interleave).strip()} (median of {args.rounds} alternating rounds of "
        f"{args.requests}; CPU: this process's CPU time per request, task run and recorded included)"
    )
    for name in names:
        print(
            f"  {name:<26} {rate_of[name]:8.0f} req/s | ratio {rate_of[name] / rate_of['plain']:.2f} | "
            f"CPU {cpu_of[name] * 1e6:6.0f} us/request"
        )
    slowest = min(rate_of[pattern] for pattern in patterns) / max(rate_of[pattern] for pattern in patterns)
    cheapest = min(cpu_of[pattern] for pattern in patterns) / max(cpu_of[pattern] for pattern in patterns)
    print(f"  patterns: slowest / fastest req/s {slowest:.3f} | cheapest / dearest CPU {cheapest:.3f}")


def _drive_label(interleave: bool) -> str:
    return "interleaved " if interleave else "back to back"


class LoopWatch:
    """The longest the event loop kept a coroutine waiting for its turn, while it is entered.

    A coroutine asks to wake every millisecond and notes how late it woke. It sleeps between
    turns instead of yielding at every one: a coroutine that never sleeps would keep the loop
    thread busy and make the writer thread wait for the GIL, slowing the drain it watches.
    """

    PERIOD = 0.001

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None
        self._stop = False

    async def _watch(self) -> None:
        while not self._stop:
            asked = time.perf_counter()
            await asyncio.sleep(self.PERIOD)
            self.longest = max(self.longest, time.perf_counter() - asked - self.PERIOD)

    async def __aenter__(self) -> LoopWatch:
        self._task = asyncio.create_task(self._watch())
        await asyncio.sleep(0)  # its first turn, so the clock starts now
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stop = True
        assert self._task is not None
        await self._task


async def drain_rate(count: int, folder: Path) -> None:
    plain_tasks = BackgroundTasks()
    for _ in range(count):
        plain_tasks.add_task(noop)
    async with LoopWatch() as plain_watch:
        start = time.perf_counter()
        await plain_tasks()
        plain = count / (time.perf_counter() - start)

    for persist in (False, True):
        manager = TaskManager(database_url=f"sqlite:///{folder / f'drain-{persist}.db'}")
        task = manager.task(name="noop", persist=persist)(noop)
        async with manager.lifespan():
            tasks = ManagedBackgroundTasks(manager)
            for _ in range(count):
                tasks.add_task(task)
            async with LoopWatch() as watch:
                start = time.perf_counter()
                await tasks()
                await manager.wait_idle(timeout=300)
                managed = count / (time.perf_counter() - start)
            await check_all_succeeded(manager, 0, count)  # a fresh database: none before
        manager.store.dispose()
        label = "persist=True " if persist else "persist=False"
        print(
            f"drain {count} queued {label}: plain {plain:8.0f} tasks/s | managed {managed:8.0f} tasks/s "
            f"| ratio {managed / plain:.2f} | longest event-loop stall: plain {plain_watch.longest * 1e3:.1f} ms, "
            f"managed {watch.longest * 1e3:.1f} ms"
        )


async def per_task_costs(count: int, rounds: int, folder: Path) -> None:
    """Microseconds per no-op task in add_task, in the hand-over after the response, and in
    running and recording it (until its row is written), outside any request; median of rounds."""
    for persist in (False, True):
        manager = TaskManager(database_url=f"sqlite:///{folder / f'costs-{persist}.db'}")
        task = manager.task(name="noop", persist=persist)(noop)
        adds: list[float] = []
        hand_overs: list[float] = []
        runs: list[float] = []
        async with manager.lifespan():
            for _ in range(rounds):
                # One ManagedBackgroundTasks per task, as one per request.
                batches = [ManagedBackgroundTasks(manager) for _ in range(count)]
                start = time.perf_counter()
                for tasks in batches:
                    tasks.add_task(task)
                added = time.perf_counter()
                for tasks in batches:
                    await tasks()
                handed = time.perf_counter()
                await manager.wait_idle(timeout=300)
                done = time.perf_counter()
                adds.append((added - start) / count * 1e6)
                hand_overs.append((handed - added) / count * 1e6)
                runs.append((done - handed) / count * 1e6)
        manager.store.dispose()
        label = "persist=True " if persist else "persist=False"
        print(
            f"per task {label}: add_task {statistics.median(adds):5.1f} us | hand-over "
            f"{statistics.median(hand_overs):4.1f} us | run and record {statistics.median(runs):5.1f} us"
        )


async def intake_comparison(args: argparse.Namespace, folder: Path) -> None:
    """persist=True with and without SQLite's intake, and without its commit; the floor and
    persist=False; all in the same alternating rounds.

    Machine noise on a shared host moves every ratio by several hundredths from run to run; in
    one process and one set of rounds it moves them together, so the difference stands out.
    "no commit" is persist=True with the intake's INSERT and COMMIT in the request left out
    (and so the intake row's delete in the writer): the row is not durable until the writer
    writes it, as for persist=False. A measurement only, never a mode: it shows what the one
    commit the issue requires costs in this harness, against what the floor's commit costs.
    """
    variants: dict[str, tuple[TaskManager, FastAPI]] = {}
    for number, (label, intake, persist) in enumerate(
        (("intake", True, True), ("no intake", False, True), ("no commit", True, True), ("persist=False", True, False))
    ):
        manager = TaskManager(database_url=f"sqlite:///{folder / f'compare-{number}.db'}")
        if not intake:  # committed into the task table in the request, as PostgreSQL does
            manager.store.database.record_durably = _not_kept  # type: ignore[method-assign]
        if label == "no commit":
            manager.store.database.record_durably = _held_without_commit  # type: ignore[method-assign]
        variants[label] = (manager, managed_app(manager, manager.task(name="noop", persist=persist)(noop)))
    floor = floor_app(folder / "compare-floor.db")
    rates: dict[str, list[float]] = {"plain": [], "floor": [], **{label: [] for label in variants}}
    async with contextlib.AsyncExitStack() as stack:
        for manager, app in variants.values():
            await stack.enter_async_context(app.router.lifespan_context(app))
            await timed_managed(manager, app, 200, args.concurrency)
        await timed_plain(200, args.concurrency, floor)
        interleave = args.interleave
        for _ in range(args.rounds):
            rates["plain"].append(await timed_plain(args.requests, args.concurrency, interleave=interleave))
            rates["floor"].append(await timed_plain(args.requests, args.concurrency, floor, interleave))
            for label, (manager, app) in variants.items():
                rates[label].append(await timed_managed(manager, app, args.requests, args.concurrency, interleave))
    plain = statistics.median(rates.pop("plain"))
    ratios = " | ".join(f"{label} {statistics.median(r) / plain:.2f}" for label, r in rates.items())
    drive_label = _drive_label(args.interleave).strip()
    print(
        f"{drive_label} against plain {plain:.0f} req/s (median of {args.rounds} alternating rounds of "
        f"{args.requests}): {ratios}"
    )


def _not_kept(row: dict[str, object]) -> bool:
    """Database.record_durably for the "no intake" measurement: the row is committed to the task table."""
    return False


def _held_without_commit(row: dict[str, object]) -> bool:
    """Database.record_durably for the "no commit" measurement: held by the writer, written nowhere."""
    return True


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--drain", type=int, default=10_000)
    parser.add_argument("--interleave", action="store_true", help="only the interleaved drive (no drain)")
    parser.add_argument("--per-task", action="store_true", help="only the cost per task of each step, outside requests")
    parser.add_argument("--drain-only", action="store_true", help="only the drain of --drain queued tasks")
    parser.add_argument("--patterns", action="store_true", help="only the injection patterns beside plain")
    parser.add_argument("--sync-routes", action="store_true", help="--patterns with `def` routes (thread pool)")
    parser.add_argument(
        "--only", nargs="+", choices=PATTERNS, help="--patterns with these patterns only (fewer apps per round)"
    )
    parser.add_argument(
        "--compare-intake",
        action="store_true",
        help="only persist=True with and without the intake and its commit, the floor and persist=False",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.per_task:
            await per_task_costs(5000, args.rounds, Path(folder))
            return
        if args.compare_intake:
            await intake_comparison(args, Path(folder))
            return
        if args.drain_only:
            await drain_rate(args.drain, Path(folder))
            return
        if args.patterns:
            for interleave in (True,) if args.interleave else (False, True):
                await pattern_throughput(args, Path(folder), interleave)
            return
        for interleave in (True,) if args.interleave else (False, True):
            for persist in (False, True):
                await request_throughput(persist, args, Path(folder), interleave)
            await floor_throughput(args, Path(folder), interleave)
            await pattern_throughput(args, Path(folder), interleave)
        if not args.interleave:
            await drain_rate(args.drain, Path(folder))


if __name__ == "__main__":
    asyncio.run(main())
