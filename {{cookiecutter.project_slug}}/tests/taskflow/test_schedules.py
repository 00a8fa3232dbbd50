"""Periodic schedules: declared with @task_manager.schedule, each due time fired exactly once.

Store-backed tests run on SQLite and PostgreSQL (the `database_url` fixture).
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.taskflow import ScheduleNotFound, TaskManager, TaskStatus
from app.taskflow.models import new_task_row
from app.taskflow.schedules import MISSED_AFTER, run_id
from app.taskflow.store import TaskFilter, open_store

from .conftest import eventually


def runs_of(manager: TaskManager, name: str) -> list[Any]:
    return manager.store.list(TaskFilter(name=name), limit=1000)


def stored(manager: TaskManager, name: str) -> Any:
    row = manager.store.get_schedule(name)
    assert row is not None
    return row


# -- declaring --------------------------------------------------------------------------------------


def test_a_schedule_needs_exactly_one_of_every_and_cron() -> None:
    manager = TaskManager()
    with pytest.raises(ValueError, match="schedule 'both': give exactly one of every="):

        @manager.schedule(every=5, cron="* * * * *", name="both")
        def both() -> None: ...

    with pytest.raises(ValueError, match="give exactly one of every="):

        @manager.schedule()
        def neither() -> None: ...


@pytest.mark.parametrize("every", [0, -1, float("nan"), True, "5"])
def test_every_must_be_a_positive_number_of_seconds(every: Any) -> None:
    manager = TaskManager()
    with pytest.raises(ValueError, match="every must be a positive number of seconds or a timedelta"):

        @manager.schedule(every=every)
        def tick() -> None: ...


def test_bad_cron_text_fails_at_decoration_naming_the_schedule_the_text_and_an_example() -> None:
    manager = TaskManager()
    with pytest.raises(ValueError) as refused:

        @manager.schedule(cron="61 * * * *", name="report")
        def report() -> None: ...

    message = str(refused.value)
    assert "schedule 'report'" in message
    assert "'61 * * * *'" in message
    assert '"*/5 * * * *"' in message
    assert manager.registry.get("report") is None  # nothing half-registered


def test_cron_text_longer_than_its_column_is_refused() -> None:
    manager = TaskManager()
    with pytest.raises(ValueError, match="cron text is 209 characters long; at most 200 are stored"):

        @manager.schedule(cron="0 " + "1," * 100 + "3 * * *")
        def report() -> None: ...


def test_an_unknown_timezone_is_refused_with_an_example() -> None:
    manager = TaskManager()
    with pytest.raises(ValueError, match=r"unknown timezone 'Mars/Olympus'.*'Europe/Berlin'"):

        @manager.schedule(cron="0 3 * * *", timezone="Mars/Olympus")
        def nightly() -> None: ...


def test_a_scheduled_function_must_take_no_required_arguments() -> None:
    manager = TaskManager()
    with pytest.raises(TypeError, match="requires customer_id; give them defaults"):

        @manager.schedule(every=60)
        def bill(customer_id: int) -> None: ...

    @manager.schedule(every=60)
    def bill_all(limit: int = 100) -> None: ...


def test_a_schedule_name_declared_twice_is_refused() -> None:
    manager = TaskManager()

    @manager.schedule(every=60, name="sync")
    def first() -> None: ...

    with pytest.raises(ValueError, match="schedule 'sync' is declared twice"):

        @manager.schedule(every=30, name="sync")
        def second() -> None: ...


def test_a_schedule_is_an_ordinary_task_with_its_options() -> None:
    manager = TaskManager()

    @manager.schedule(every=timedelta(minutes=5), retries=2, timeout=30)
    def cleanup() -> None: ...

    spec = manager.registry.get("cleanup")
    assert spec is not None
    assert (spec.policy.retries, spec.timeout) == (2, 30)
    assert manager.schedules["cleanup"].every == 300
    assert cleanup() is None  # still directly callable


def test_every_is_stored_exactly() -> None:
    manager = TaskManager()

    @manager.schedule(every=1234567)
    def rare() -> None: ...

    @manager.schedule(every=0.25)
    def often() -> None: ...

    assert (manager.schedules["rare"].expression, manager.schedules["rare"].every) == ("1234567", 1234567)
    assert manager.schedules["often"].expression == "0.25"


# -- due times --------------------------------------------------------------------------------------


def test_cron_due_times_follow_the_timezone_across_a_dst_change() -> None:
    manager = TaskManager()

    @manager.schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    def nightly() -> None: ...

    schedule = manager.schedules["nightly"]
    # 2:30 local does not exist on 2026-03-29 in Berlin (clocks jump 2:00 -> 3:00): cronsim runs it at 3:00.
    before_spring = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    first = schedule.next_after(before_spring)
    second = schedule.next_after(first)
    assert first == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST
    assert second == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert first.tzinfo is UTC


def test_every_due_times_count_on_from_the_stored_one() -> None:
    manager = TaskManager()

    @manager.schedule(every=10)
    def tick() -> None: ...

    schedule = manager.schedules["tick"]
    due = datetime(2026, 1, 1, tzinfo=UTC)
    assert schedule.next_after(due) == due + timedelta(seconds=10)
    assert schedule.latest_due(due, due + timedelta(seconds=35)) == due + timedelta(seconds=30)
    assert schedule.latest_due(due, due) == due


# -- firing ------------------------------------------------------------------------------------------


async def test_a_schedule_runs_periodically_as_separate_tasks(make_manager: Any) -> None:
    manager = make_manager()
    ran: list[str] = []

    @manager.schedule(every=0.2)
    async def tick() -> None:
        ran.append("tick")

    async with manager.lifespan():
        await eventually(lambda: len(ran) >= 3)
        await manager.flush()
        rows = await asyncio.to_thread(runs_of, manager, "tick")
        schedule = await asyncio.to_thread(stored, manager, "tick")
    assert len({row.id for row in rows}) == len(rows) >= 3
    keys = [row.idempotency_key for row in rows]  # one per due time: schedule:<name>@<due time>
    assert len(set(keys)) == len(keys) and all(key.startswith("schedule:tick@") for key in keys)
    assert schedule.last_task_id in {row.id for row in rows}
    assert schedule.next_run_at > schedule.last_run_at


def test_two_stores_racing_for_one_due_time_make_one_task(database_url: str) -> None:
    stores = [open_store(database_url) for _ in range(2)]
    try:
        stores[0].create_tables()
        due = datetime(2026, 1, 1, tzinfo=UTC)
        stores[0].register_schedule("race", kind="every", expression="1", timezone="UTC", first_run_at=due)
        for round_ in range(10):
            due_at = due + timedelta(seconds=round_)
            together = threading.Barrier(len(stores))
            won: list[bool] = []

            def fire(
                store: Any, due_at: datetime = due_at, together: threading.Barrier = together, won: list[bool] = won
            ) -> None:
                row = new_task_row(id=run_id("race", due_at), name="race", persist=True)
                together.wait()
                won.append(
                    store.fire_schedule(
                        "race", due_at=due_at, next_run_at=due_at + timedelta(seconds=1), run_at=due_at, row=row
                    )
                )

            threads = [threading.Thread(target=fire, args=(store,)) for store in stores]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            assert sorted(won) == [False, True], f"round {round_}: {won}"
        rows = stores[0].list(TaskFilter(name="race"), limit=100)
        assert len(rows) == 10 == len({row.id for row in rows})
    finally:
        for store in stores:
            store.dispose()


def test_a_due_time_whose_task_exists_already_moves_on_without_a_second_task(database_url: str) -> None:
    store = open_store(database_url)
    try:
        store.create_tables()
        due = datetime(2026, 1, 1, tzinfo=UTC)
        store.register_schedule("once", kind="every", expression="60", timezone="UTC", first_run_at=due)
        row = new_task_row(id=run_id("once", due), name="once", persist=True)
        store.enqueue(dict(row))  # as if an earlier definition had fired this due time already
        assert store.fire_schedule("once", due_at=due, next_run_at=due + timedelta(minutes=1), run_at=due, row=row)
        assert len(store.list(TaskFilter(name="once"), limit=10)) == 1
        assert store.get_schedule("once").next_run_at == due + timedelta(minutes=1)
    finally:
        store.dispose()


async def stopped_ago(manager: TaskManager, name: str, every: str, ago: timedelta) -> datetime:
    """Store schedule `name` as a service that stopped `ago` left it (due then); returns that due time."""
    missed_since = datetime.now(UTC) - ago
    await asyncio.to_thread(
        manager.store.register_schedule, name, kind="every", expression=every, timezone="UTC", first_run_at=missed_since
    )
    return missed_since


async def test_after_downtime_the_missed_due_times_run_once_not_each(make_manager: Any) -> None:
    manager = make_manager()
    ran: list[str] = []

    @manager.schedule(every=60)
    async def minutely() -> None:
        ran.append("minutely")

    missed_since = await stopped_ago(manager, "minutely", "60", timedelta(hours=1))
    async with manager.lifespan():
        await eventually(lambda: ran == ["minutely"])
        await manager.flush()
        schedule = await asyncio.to_thread(stored, manager, "minutely")
        rows = await asyncio.to_thread(runs_of, manager, "minutely")
    assert len(rows) == 1
    assert schedule.last_run_at >= missed_since + timedelta(minutes=59)  # the latest missed due time
    assert schedule.next_run_at > datetime.now(UTC) - timedelta(seconds=1)


async def test_with_catch_up_false_a_long_missed_due_time_is_skipped(make_manager: Any) -> None:
    manager = make_manager()
    ran: list[str] = []

    @manager.schedule(every=3600, catch_up=False)
    async def hourly() -> None:
        ran.append("hourly")

    # The latest missed due time is ten minutes old: longer ago than MISSED_AFTER.
    assert MISSED_AFTER < 600
    await stopped_ago(manager, "hourly", "3600", timedelta(minutes=70))
    async with manager.lifespan():

        def moved_on() -> bool:
            return stored(manager, "hourly").next_run_at > datetime.now(UTC)

        await eventually(moved_on)
        schedule = await asyncio.to_thread(stored, manager, "hourly")
    assert ran == []
    assert schedule.last_run_at is None and schedule.last_task_id is None


async def test_a_restart_keeps_the_next_due_time_and_a_changed_definition_resets_it(make_manager: Any) -> None:
    first = make_manager()

    @first.schedule(every=3600, name="hourly")
    async def hourly() -> None: ...

    async with first.lifespan():
        kept = (await asyncio.to_thread(stored, first, "hourly")).next_run_at

    again = make_manager()

    @again.schedule(every=3600, name="hourly")
    async def hourly_again() -> None: ...

    async with again.lifespan():
        assert (await asyncio.to_thread(stored, again, "hourly")).next_run_at == kept

    changed = make_manager()

    @changed.schedule(every=7200, name="hourly")
    async def every_two_hours() -> None: ...

    async with changed.lifespan():
        row = await asyncio.to_thread(stored, changed, "hourly")
    assert (row.expression, row.next_run_at > kept) == ("7200", True)


async def test_a_paused_schedule_does_not_fire_and_a_resume_starts_from_the_next_due_time(make_manager: Any) -> None:
    manager = make_manager()
    ran: list[str] = []

    @manager.schedule(every=60)
    async def minutely() -> None:
        ran.append("minutely")

    @manager.schedule(every=0.1)
    async def heartbeat() -> None:
        ran.append("heartbeat")

    await stopped_ago(manager, "minutely", "60", timedelta(hours=1))
    await manager.pause_schedule("minutely", actor="ops")  # no manager needs to run for this
    async with manager.lifespan():
        # The scheduler went round several times meanwhile: the due, paused schedule was passed over.
        await eventually(lambda: ran.count("heartbeat") >= 3)
        paused = await asyncio.to_thread(stored, manager, "minutely")
        await manager.resume_schedule("minutely", actor="ops")
        resumed = await asyncio.to_thread(stored, manager, "minutely")
        audit = await asyncio.to_thread(lambda: manager.store.list_audit(limit=10))
    assert "minutely" not in ran
    assert paused.paused and paused.next_run_at < datetime.now(UTC)
    assert not resumed.paused
    assert resumed.next_run_at > datetime.now(UTC)  # the time that passed while paused does not run
    assert [(entry.actor, entry.action, entry.detail) for entry in reversed(audit)] == [
        ("ops", "pause-schedule", '{"schedule": "minutely"}'),
        ("ops", "resume-schedule", '{"schedule": "minutely"}'),
    ]


async def test_pausing_an_unknown_schedule_says_so(make_manager: Any) -> None:
    manager = make_manager()
    with pytest.raises(ScheduleNotFound, match="no schedule named 'nope'"):
        await manager.pause_schedule("nope")


async def test_a_scheduled_run_is_retried_like_any_task(make_manager: Any) -> None:
    manager = make_manager()
    attempts: list[int] = []

    @manager.schedule(every=3600, retries=1)
    async def flaky() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")

    await stopped_ago(manager, "flaky", "3600", timedelta(seconds=1))
    async with manager.lifespan():
        await eventually(lambda: len(attempts) == 2)
        await manager.wait_idle()

        def succeeded() -> bool:
            rows = runs_of(manager, "flaky")
            return len(rows) == 1 and rows[0].status == TaskStatus.SUCCESS

        await eventually(succeeded)
        schedule = await asyncio.to_thread(lambda: manager.store.list_schedules())
    assert [(row.name, row.last_status) for row in schedule] == [("flaky", "success")]


async def test_a_service_without_schedules_stores_none(make_manager: Any) -> None:
    manager = make_manager()

    @manager.task
    async def plain() -> None: ...

    async with manager.lifespan():
        assert await asyncio.to_thread(manager.store.list_schedules) == []


async def test_a_failing_database_does_not_stop_the_scheduler(make_manager: Any, monkeypatch: Any) -> None:
    manager = make_manager()
    ran: list[str] = []

    @manager.schedule(every=0.2)
    async def tick() -> None:
        ran.append("tick")

    store = manager.store
    real = store.fire_schedule
    failures = iter(range(3))

    def broken_then_fine(*args: Any, **kwargs: Any) -> bool:
        if next(failures, None) is not None:
            raise ConnectionError("database unreachable")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "fire_schedule", broken_then_fine)
    async with manager.lifespan():
        await eventually(lambda: len(ran) >= 2)
