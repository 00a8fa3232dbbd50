"""Schedules across real processes: two servers share one database and one schedule `every=1`.

Each due time must make exactly one task, whichever server fires it, also when the server about
to fire is killed with SIGKILL; it runs once, unless a kill took its run's outcome with it (then
it runs again elsewhere, as every persisted task does). The scheduled task writes one line per execution (proc_app.py),
and its task id is made from the schedule and the due time, so one id per due time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from .procs import executions_by_task, read_executions, servers, wait_until

pytestmark = pytest.mark.processes

FAST = {"TASK_LEASE_SECONDS": "2", "TASK_POLL_INTERVAL": "0.1", "TASK_SHUTDOWN_TIMEOUT": "2"}
SCHEDULE = {**FAST, "PROC_SCHEDULE_EVERY": "1"}
SECONDS = 10


class ScheduledRuns:
    """The schedule's task rows, read straight from the database."""

    def __init__(self, database_url: str) -> None:
        self._engine = create_engine(database_url, poolclass=NullPool)

    def keys(self) -> list[str]:
        """One idempotency key per task row: schedule:tick@<due time>."""
        with self._engine.connect() as connection:
            query = text("SELECT idempotency_key FROM taskflow_tasks WHERE name = 'tick'")
            return list(connection.execute(query).scalars())

    def unfinished(self) -> int:
        with self._engine.connect() as connection:
            query = text("SELECT count(*) FROM taskflow_tasks WHERE name = 'tick' AND status <> 'success'")
            return int(connection.execute(query).scalar_one())

    def dispose(self) -> None:
        self._engine.dispose()


@pytest.fixture
def runs(database_url: str) -> Iterator[ScheduledRuns]:
    table = ScheduledRuns(database_url)
    yield table
    table.dispose()


def assert_each_due_time_ran_once(folder: Path, keys: list[str], *, killed: frozenset[int] = frozenset()) -> None:
    """One task row per due time, and each ran once, except where a kill took the run's outcome
    with it: a persisted task whose process died before its outcome was written runs again."""
    assert len(keys) == len(set(keys)), f"two task rows for one due time: {sorted(keys)}"
    by_task = executions_by_task(read_executions(folder))
    for task_id, found in by_task.items():
        earlier = sorted(found, key=lambda run: run.start)[:-1]
        assert all(run.pid in killed for run in earlier), f"task {task_id} ran again without a kill: {found}"
    assert len(by_task) <= len(keys)


def test_two_servers_with_one_schedule_every_second_fire_each_due_time_once(
    database_url: str, tmp_path: Path, runs: ScheduledRuns
) -> None:
    with servers(database_url, tmp_path, **SCHEDULE) as group:
        first, second = group.new("a"), group.new("b")
        first.start_healthy()
        second.start_healthy()
        # Counted over a window both servers run in: from the first run seen to SECONDS later.
        wait_until(lambda: len(runs.keys()) >= 1, timeout=30, what="the first scheduled run")
        began = len(runs.keys())
        deadline = time.monotonic() + SECONDS
        wait_until(lambda: time.monotonic() >= deadline, timeout=SECONDS + 5, what="the counting window")
        fired = len(runs.keys()) - began
        first.terminate(timeout=30)
        second.terminate(timeout=30)
    keys = runs.keys()
    assert 7 <= fired <= 13, f"{fired} runs in {SECONDS}s of a schedule every second"
    assert runs.unfinished() <= 2  # at most the last due times, released at the stop
    assert_each_due_time_ran_once(group.records, keys)


def test_servers_killed_in_turn_make_one_task_per_due_time_and_the_schedule_goes_on(
    database_url: str, tmp_path: Path, runs: ScheduledRuns
) -> None:
    with servers(database_url, tmp_path, **SCHEDULE) as group:
        first, second = group.new("a"), group.new("b")
        first.start_healthy()
        second.start_healthy()
        killed: set[int] = set()
        for _ in range(3):  # kill each in turn, whenever it may be firing, and bring it back
            wait_until(lambda: len(runs.keys()) >= 1, timeout=30, what="a scheduled run")
            seen = len(runs.keys())
            wait_until(lambda seen=seen: len(runs.keys()) >= seen + 2, timeout=30, what="two more runs")
            killed.add(first.pid)
            first.kill()
            wait_until(lambda seen=seen: len(runs.keys()) >= seen + 4, timeout=30, what="runs go on on the survivor")
            first.start_healthy()
            first, second = second, first
        wait_until(lambda: runs.unfinished() == 0, timeout=30, what="every fired due time has run")
    keys = runs.keys()
    assert_each_due_time_ran_once(group.records, keys, killed=frozenset(killed))
    assert len(keys) >= 12
