"""Rate limits: `@task(rate_limit="N/period")`, at most N starts in any window of the period,
counted across every instance in the task database or, with `redis_url`, in Redis.

The limits are checked where users feel them: when each task's code began, as the task itself
notes it, and as taskflow recorded each attempt's start.
Store-backed tests run on SQLite and PostgreSQL (the `database_url` fixture).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection

from app.taskflow import TaskManager, TaskStatus
from app.taskflow.models import utcnow
from app.taskflow.rates import DISPATCH_MARGIN, Rate, RedisRateWindows, parse_rate
from app.taskflow.store.rates import RATE_STARTS, DatabaseRateWindows

from .conftest import ADMIN, ManagerFactory, eventually, wait_for_status
from .services import REDIS_URL, require_redis
from .sql import captured, query_plan, read_sql, write_sql

# -- the option -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "period"),
    [
        ("10/minute", 10, 60.0),
        ("20/second", 20, 1.0),
        ("20 / s", 20, 1.0),
        ("5/min", 5, 60.0),
        ("100/5 minutes", 100, 300.0),
        ("1/2h", 1, 7200.0),
        ("3/1.5 seconds", 3, 1.5),
        ("1000/day", 1000, 86400.0),
        ("7/Hours", 7, 3600.0),
    ],
)
def test_a_rate_is_a_count_per_period_in_any_of_its_spellings(text: str, limit: int, period: float) -> None:
    rate = parse_rate(text)
    assert (rate.limit, rate.period) == (limit, period)


@pytest.mark.parametrize("bad", ["10", "10/", "ten/minute", "10/fortnight", "10/ms", "0/second", "5/0 minutes", 10])
def test_a_bad_rate_limit_fails_at_decoration_naming_the_task_and_the_accepted_forms(
    sqlite_url: str, bad: object
) -> None:
    manager = TaskManager(database_url=sqlite_url)
    with pytest.raises(ValueError) as caught:
        manager.task(name="call_api", rate_limit=bad)
    message = str(caught.value)
    assert "rate_limit of task 'call_api'" in message and 'rate_limit="10/minute"' in message, message
    assert repr(bad) in message, message
    manager.store.dispose()


# -- the windows ----------------------------------------------------------------------------------


@pytest.fixture(params=["database", "redis"])
def windows(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[tuple[Any, TaskManager]]:
    """A RateWindows and a manager whose store gives the connection `take` runs in."""
    manager = TaskManager(database_url=sqlite_url)
    if request.param == "database":
        yield DatabaseRateWindows(), manager
    else:
        require_redis()
        prefix = f"taskflow-test-{uuid.uuid4().hex}:"
        redis_windows = RedisRateWindows(REDIS_URL, prefix=prefix)
        yield redis_windows, manager
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        client.delete(redis_windows.key("call_api"))
        client.close()
        redis_windows.close()
    manager.store.dispose()


def take(windows: tuple[Any, TaskManager], wanted: int, now: datetime, rate: Rate) -> Any:
    store_windows, manager = windows
    with manager.store.writing() as connection:
        return store_windows.take(connection, name="call_api", rate=rate, wanted=wanted, now=now)


def usage(windows: tuple[Any, TaskManager], now: datetime, rate: Rate) -> Any:
    store_windows, manager = windows
    with manager.store.reading() as connection:
        return store_windows.usage(connection, name="call_api", rate=rate, now=now)


def test_a_window_grants_its_limit_then_room_again_as_each_start_leaves_it(windows: Any) -> None:
    rate = parse_rate("3/second")
    # A start counts for its period and the dispatch margin (its code begins a moment after the claim).
    assert rate.window == timedelta(seconds=1) + DISPATCH_MARGIN
    start = utcnow()
    first = take(windows, 2, start, rate)
    assert (first.granted, first.frees_at) == (2, None)
    later = start + timedelta(milliseconds=400)
    second = take(windows, 5, later, rate)
    # One more fits; the window is then full until the first two starts leave it.
    assert (second.granted, second.frees_at) == (1, start + rate.window)
    assert usage(windows, later, rate).started == 3
    assert take(windows, 5, start + rate.window - timedelta(milliseconds=1), rate).granted == 0
    # At exactly a window after them the first two are out; the third is still in.
    at_edge = take(windows, 5, start + rate.window, rate)
    assert (at_edge.granted, at_edge.frees_at) == (2, later + rate.window)
    window = usage(windows, start + rate.window, rate)
    assert (window.started, window.frees_at) == (3, later + rate.window)


def test_the_database_window_keeps_only_its_own_starts_and_reads_them_through_its_index(database_url: str) -> None:
    manager = TaskManager(database_url=database_url)
    store = manager.store
    rate = parse_rate("5/second")
    start = utcnow()
    windows = DatabaseRateWindows()
    # Other tasks' starts, many: the window of one task must not read through them.
    others = [{"name": f"other_{n % 50}", "started_at": start} for n in range(3000)]
    write_sql(store, lambda c: c.execute(insert(RATE_STARTS), others))
    for step in range(40):  # 8 seconds of starts at five a second, a tenth of a second apart
        now = start + timedelta(milliseconds=200 * step)
        write_sql(store, lambda c, now=now: windows.take(c, name="call_api", rate=rate, wanted=1, now=now))

    def plans(connection: Connection) -> list[str]:
        with captured(connection) as statements:
            windows.take(connection, name="call_api", rate=rate, wanted=1, now=start + timedelta(seconds=9))
        return [
            query_plan(connection, sql, parameters, table="taskflow_rate_starts")
            for sql, parameters in statements
            if sql.lstrip().upper().startswith(("SELECT", "DELETE"))
        ]

    try:
        kept = read_sql(
            store, lambda c: c.execute(select(func.count()).where(RATE_STARTS.c.name == "call_api")).scalar_one()
        )
        explained = write_sql(store, plans)
    finally:
        store.dispose()
    # Starts that left the window were deleted as it slid: at most a window's worth are kept.
    assert kept <= rate.limit + 1, kept
    assert len(explained) == 2, explained  # the delete of old starts, the read of the window
    for plan in explained:
        assert "ix_taskflow_rate_starts_name_started" in plan and "seq scan" not in plan, plan


# -- across instances -----------------------------------------------------------------------------


def most_in_any_window(moments: list[datetime], period: timedelta) -> int:
    """The most moments found in any window [t, t + period) of the timeline."""
    ordered = sorted(moments)
    most = first = 0
    for last, moment in enumerate(ordered):
        while moment - ordered[first] >= period:
            first += 1
        most = max(most, last - first + 1)
    return most


@pytest.mark.parametrize("windows_in", ["database", "redis"])
async def test_twenty_a_second_is_never_exceeded_by_two_instances(
    make_manager: ManagerFactory, windows_in: str
) -> None:
    redis: dict[str, Any] = {}
    if windows_in == "redis":
        require_redis()
        redis = {"redis_url": REDIS_URL, "redis_prefix": f"taskflow-test-{uuid.uuid4().hex}:"}
    count = 60
    began: dict[int, datetime] = {}
    # A long poll: only the claim loop's wake-up at the window's next room can start the next batch in time.
    managers = [make_manager(concurrency=8, poll_interval=60, **redis) for _ in range(2)]
    tasks = []
    for manager in managers:

        @manager.task(name="call_api", rate_limit="20/second")
        async def call_api(n: int) -> None:
            began[n] = utcnow()

        tasks.append(call_api)
    first, second = managers
    # The first instance fills the first window; the second then starts against it and runs the
    # rest once the first has stopped. (Which instance wins a claim is otherwise a race, and both
    # instances must run some for the test to mean anything.)
    await first.start()
    ids = [first.enqueue(tasks[0], kwargs={"n": n}) for n in range(20)]
    await eventually(lambda: len(began) == 20, timeout=60)
    await second.start()
    await first.stop()
    ids += [managers[n % 2].enqueue(tasks[n % 2], kwargs={"n": n}) for n in range(20, count)]
    for task_id in ids:
        await wait_for_status(second, task_id, TaskStatus.SUCCESS.value, timeout=60)
    rows = [await asyncio.to_thread(second.store.get, task_id) for task_id in ids]
    assert all(row.attempt == 1 for row in rows)  # one start each
    # Counted where the code began, by the tasks themselves, and as taskflow recorded each start.
    for starts in (list(began.values()), [row.started_at for row in rows]):
        assert most_in_any_window(starts, timedelta(seconds=1)) == 20  # reached, never passed
        # Three windows' worth: the last batch started at least two periods after the first.
        assert max(starts) - min(starts) >= timedelta(seconds=2)
    assert {row.owner for row in rows} == {manager.owner for manager in managers}


async def test_a_retry_is_a_start_that_waits_for_room_in_the_window(make_manager: ManagerFactory) -> None:
    manager = make_manager(concurrency=2)
    failures: list[int] = []

    @manager.task(name="call_api", rate_limit="1/second", retries=1)
    async def call_api() -> None:
        if not failures:
            failures.append(1)
            raise RuntimeError("the partner answered 503")

    await manager.start()
    task_id = manager.enqueue(call_api)
    await wait_for_status(manager, task_id, TaskStatus.SUCCESS.value)
    first, retried = await asyncio.to_thread(manager.store.attempts, task_id)
    assert (first.number, first.status, retried.number) == (1, TaskStatus.FAILED.value, 2)
    assert retried.started_at - first.started_at >= timedelta(seconds=1)


async def test_rate_limited_tasks_wait_while_redis_is_unreachable_and_others_run(
    make_manager: ManagerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    manager = make_manager(concurrency=2, redis_url="redis://127.0.0.1:1/0")

    @manager.task(name="call_api", rate_limit="5/second")
    async def call_api() -> None:
        return None

    @manager.task(name="plain")
    async def plain() -> None:
        return None

    with caplog.at_level(logging.ERROR, logger="taskflow"):
        await manager.start()
        held = manager.enqueue(call_api)
        await wait_for_status(manager, manager.enqueue(plain), TaskStatus.SUCCESS.value)
        await eventually(lambda: "count the starts of rate-limited task 'call_api'" in caplog.text, timeout=20)
    row = await asyncio.to_thread(manager.store.get, held)
    assert row.status == TaskStatus.PENDING.value and row.owner is None  # kept, not lost, not failed


# -- admin ----------------------------------------------------------------------------------------


async def test_the_admin_tells_a_task_waits_for_its_rate_and_lists_the_limit(
    make_manager: ManagerFactory, make_app: Any, client_for: Any
) -> None:
    manager = make_manager(concurrency=2)

    @manager.task(name="call_api", rate_limit="1/minute")
    async def call_api() -> None:
        return None

    app = make_app(manager)
    async with client_for(app, auth=ADMIN) as client:
        ran = manager.enqueue(call_api)
        await wait_for_status(manager, ran, TaskStatus.SUCCESS.value)
        held = manager.enqueue(call_api)
        page = await client.get(f"/tasks/dashboard/tasks/{held}")
        listing = await client.get("/tasks/dashboard", params={"status": "pending"})
        registry = await client.get("/tasks/dashboard/registry")
        api = await client.get("/tasks/registry")
    assert "rate limit: 1 of call_api started within its window (rate_limit 1/minute)" in page.text, page.text
    assert "the next may start at" in page.text
    # The list marks it too, with the same words on hover.
    assert '<span class="badge waiting-rate" title="rate limit: 1 of call_api started' in listing.text, listing.text
    assert "<td>1/minute</td>" in registry.text
    assert [entry["rate_limit"] for entry in api.json() if entry["name"] == "call_api"] == ["1/minute"]
