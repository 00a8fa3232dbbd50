"""The writer under faults injected into a real database: it never stops, loses nothing,
applies nothing twice, and flushed() returns once the database takes writes again."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.taskflow import TaskManager, TaskStatus, current_task

from .conftest import eventually, task_status
from .services import POSTGRES_URL, postgres_database, require_postgres

FLUSH_DEADLINE = 60.0
# The database refuses any task row or attempt whose error mentions "forbidden".
REFUSE = [
    f"CREATE TRIGGER refuse_{table}_{event} BEFORE {event} ON {table} "
    "WHEN NEW.error_message LIKE '%forbidden%' BEGIN SELECT RAISE(ABORT, 'the test refuses this text'); END"
    for table, event in (("taskflow_tasks", "INSERT"), ("taskflow_tasks", "UPDATE"), ("taskflow_attempts", "INSERT"))
]
# While the outage table holds a row, a write to the task table fails the way a locked or
# unreachable database fails it (OperationalError), raised by the database as it runs the
# write. (A switch made of data, not schema: a connection keeps a schema it failed to use.)
OUTAGE = ["CREATE TABLE outage (since INTEGER)"] + [
    f"CREATE TRIGGER outage_{event} BEFORE {event} ON taskflow_tasks WHEN EXISTS (SELECT 1 FROM outage) "
    "BEGIN SELECT json('the database is away'); END"
    for event in ("INSERT", "UPDATE")
]
OUTAGE_ON = ["INSERT INTO outage VALUES (1)"]
OUTAGE_OFF = ["DELETE FROM outage"]


class WhenLogged(logging.Handler):
    """Runs `action` once, when `logger` has logged `count` records holding `needle`."""

    def __init__(self, needle: str, action: Callable[[], None], *, count: int = 1) -> None:
        super().__init__(logging.DEBUG)
        self.needle = needle
        self.action = action
        self.count = count
        self.seen = 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.seen += 1
            if self.seen == self.count:
                self.action()


@pytest.fixture
def writer_log() -> Iterator[Callable[[logging.Handler], None]]:
    logger = logging.getLogger("taskflow.writer")
    added: list[logging.Handler] = []

    def add(handler: logging.Handler) -> None:
        logger.addHandler(handler)
        added.append(handler)

    yield add
    for handler in added:
        logger.removeHandler(handler)


def run_sql(path: Path, statements: list[str]) -> None:
    connection = sqlite3.connect(path, timeout=30)
    try:
        for statement in statements:
            connection.execute(statement)
        connection.commit()
    finally:
        connection.close()


def gated_tasks(manager: TaskManager, gate: threading.Event, runs: Counter[str]) -> tuple[Any, Any]:
    """Tasks that wait for `gate`, so their outcomes reach the writer together."""

    @manager.task(name="ok", retries=0)
    def ok(n: int) -> int:
        runs[f"ok-{n}"] += 1
        gate.wait(30)
        return n

    @manager.task(name="refused", retries=0)
    def refused() -> None:
        runs["refused"] += 1
        gate.wait(30)
        raise ValueError("a forbidden detail")

    return ok, refused


async def test_a_refused_batch_then_an_unwritable_database_loses_nothing_and_the_writer_goes_on(
    tmp_path: Path, writer_log: Callable[[logging.Handler], None], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tasks.db"
    manager = TaskManager(database_url=f"sqlite:///{path}", lease_seconds=5.0, poll_interval=0.05)
    gate = threading.Event()
    runs: Counter[str] = Counter()
    ok, refused = gated_tasks(manager, gate, runs)
    # The database goes away just after it refused a batch, while the writer writes its parts
    # one by one, and comes back after the writer failed twice.
    writer_log(WhenLogged("writing them one by one", lambda: run_sql(path, OUTAGE_ON)))
    writer_log(WhenLogged("cannot write", lambda: run_sql(path, OUTAGE_OFF), count=2))
    async with manager.lifespan():
        run_sql(path, REFUSE + OUTAGE)
        ids = {n: manager.enqueue(ok, (n,)) for n in range(5)}
        refused_id = manager.enqueue(refused)
        await eventually(lambda: len(runs) == 6)
        gate.set()
        await manager.wait_idle()
        await asyncio.wait_for(manager.flush(), FLUSH_DEADLINE)
        rows = {n: manager.store.get(task_id) for n, task_id in ids.items()}
        refused_row = manager.store.get(refused_id)
        later = manager.enqueue(ok, (99,))
        await manager.wait_idle()
        await asyncio.wait_for(manager.flush(), FLUSH_DEADLINE)
        later_row = manager.store.get(later)
    assert set(runs.values()) == {1}, runs  # each ran once
    for n, row in rows.items():
        assert (row.status, row.result, row.attempt) == (TaskStatus.SUCCESS.value, str(n), 1)
    assert (refused_row.status, refused_row.attempt) == (TaskStatus.FAILED.value, 1)
    assert refused_row.error_message.startswith("taskflow could not store this task's texts")
    assert "the test refuses this text" in refused_row.error_message
    assert later_row.status == TaskStatus.SUCCESS.value  # the writer lives on
    refusals = [r for r in caplog.records if r.name == "taskflow.writer" and "refused the texts" in r.getMessage()]
    assert refusals and all(r.levelno == logging.ERROR for r in refusals)
    assert {refused_id in r.getMessage() for r in refusals} == {True}


async def test_writes_the_database_refuses_are_stored_without_their_texts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tasks.db"
    manager = TaskManager(database_url=f"sqlite:///{path}", lease_seconds=5.0, poll_interval=0.05)
    written, reported, finish = threading.Event(), threading.Event(), threading.Event()

    @manager.task(name="reports", retries=0)
    def reports() -> str:
        written.wait(30)
        current_task().progress(1, 2, "half way")
        reported.set()
        finish.wait(30)
        return "done"

    async with manager.lifespan():
        run_sql(
            path,
            [
                "CREATE TRIGGER refuse_progress BEFORE UPDATE ON taskflow_tasks WHEN NEW.progress_message = 'half way' "
                "BEGIN SELECT RAISE(ABORT, 'the test refuses this progress'); END"
            ],
        )
        task_id = manager.enqueue(reports)
        await eventually(lambda: task_status(manager, task_id), timeout=FLUSH_DEADLINE)  # its row is written
        written.set()
        await eventually(reported.is_set)
        await asyncio.wait_for(manager.flush(), FLUSH_DEADLINE)
        running = manager.store.get(task_id)
        finish.set()
        await manager.wait_idle()
        await asyncio.wait_for(manager.flush(), FLUSH_DEADLINE)
        finished = manager.store.get(task_id)
    # The progress went in without its message; the outcome (which repeats it) with its status
    # and an error that says why the rest is missing.
    assert (running.status, running.progress_done, running.progress_message) == ("running", 1.0, None)
    assert (finished.status, finished.attempt, finished.progress_message) == ("success", 1, None)
    assert finished.error_message == "taskflow could not store this task's texts: the test refuses this progress"
    refusals = [r for r in caplog.records if r.name == "taskflow.writer" and "refused the texts" in r.getMessage()]
    assert [(r.levelno, r.getMessage().split(" of task ")[0].rsplit(" ", 1)[-1]) for r in refusals] == [
        (logging.ERROR, "progress"),
        (logging.ERROR, "outcome"),
    ]


@pytest.mark.postgresql
async def test_postgresql_unreachable_then_back_loses_nothing_and_applies_nothing_twice(
    writer_log: Callable[[logging.Handler], None],
) -> None:
    require_postgres()
    with postgres_database() as url:
        database = make_url(url).database
        admin = create_engine(make_url(POSTGRES_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")

        def connections(allowed: bool) -> None:
            with admin.connect() as connection:
                connection.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}'))
                if not allowed:
                    connection.execute(
                        text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                        {"name": database},
                    )

        failures = threading.Event()
        writer_log(WhenLogged("cannot write", failures.set, count=3))
        manager = TaskManager(database_url=url, lease_seconds=5.0, poll_interval=0.05)
        gate = threading.Event()
        runs: Counter[str] = Counter()
        ok, _ = gated_tasks(manager, gate, runs)
        try:
            async with manager.lifespan():
                ids = {n: manager.enqueue(ok, (n,)) for n in range(5)}
                await eventually(lambda: len(runs) == 5)
                await asyncio.wait_for(manager.flush(), FLUSH_DEADLINE)
                connections(allowed=False)
                gate.set()
                await eventually(failures.is_set, timeout=FLUSH_DEADLINE)
                connections(allowed=True)
                await manager.wait_idle()
                await asyncio.wait_for(manager.flush(), FLUSH_DEADLINE)
                rows = {n: manager.store.get(task_id) for n, task_id in ids.items()}
        finally:
            connections(allowed=True)
            admin.dispose()
            manager.store.dispose()
    assert set(runs.values()) == {1}, runs
    for n, row in rows.items():
        assert (row.status, row.result, row.attempt) == (TaskStatus.SUCCESS.value, str(n), 1)
