"""SQLite's write-ahead log: checkpointed beside the requests, and kept from growing without end."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from app.taskflow import TaskManager
from app.taskflow.store.engine import open_database
from app.taskflow.store.sqlite import SQLiteDatabase, WALCheckpointer

from .sql import write_sql


def wal_frames(path: Path) -> int:
    """Frames in the WAL since it last started over (a PASSIVE checkpoint reports them)."""
    connection = sqlite3.connect(path)
    try:
        [(_busy, frames, _copied)] = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        return int(frames)
    finally:
        connection.close()


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[TaskManager]:
    manager = TaskManager(database_url=f"sqlite:///{tmp_path / 'tasks.db'}", lease_seconds=5.0, poll_interval=0.05)
    yield manager
    while manager.running:
        await manager.stop()
    manager.store.dispose()


async def test_commits_leave_checkpoints_to_the_checkpointer_thread(manager: TaskManager) -> None:
    assert isinstance(manager.store.database, SQLiteDatabase)

    def autocheckpoint(connection: Any) -> int:
        return int(connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())

    # The enqueue's commit runs on the event loop: it must never copy the WAL itself.
    assert write_sql(manager.store, autocheckpoint) == 0


def test_the_wal_starts_over_once_commits_cross_the_checkpoint_period(tmp_path: Path) -> None:
    # The database alone, with nothing else writing (a running manager's heartbeats would).
    path = tmp_path / "tasks.db"
    database = open_database(f"sqlite:///{path}")
    assert isinstance(database, SQLiteDatabase)
    try:
        create_enqueued_table(database)
        for n in range(CHECKPOINT_PERIOD):  # the last one starts a checkpoint on its own thread
            enqueue(database, n)
        database.checkpointer.close()  # waits for it
        enqueue(database, CHECKPOINT_PERIOD)
        # A WAL that started over holds only the last commit, not the thousand before it.
        assert wal_frames(path) < 10
    finally:
        database.dispose()


def test_the_wal_starts_over_even_when_commits_land_during_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    database = open_database(f"sqlite:///{path}")
    assert isinstance(database, SQLiteDatabase)
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        create_enqueued_table(database)
        # What the bulk round cannot copy: commits that land while it runs. A reader's snapshot
        # stops a checkpoint at the same place, and unlike timing it is certain.
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM enqueued").fetchall()
        for n in range(100):
            enqueue(database, n)

        @contextmanager
        def the_reader_leaves_then_writes_wait() -> Iterator[None]:
            # Asked for once the bulk round is done: what held it back goes, as requests end.
            reader.execute("COMMIT")
            with database.serialised_writes():
                yield

        # Checkpoints only when told to; writes held as the database's own checkpointer holds them.
        checkpointer = WALCheckpointer(str(path), the_reader_leaves_then_writes_wait, every_commits=10**9)
        checkpointer.start()
        checkpointer.close()
        enqueue(database, 100)
        # A WAL that started over holds only the last commit; one that did not still holds the
        # hundred before it (and under steady load would grow for as long as the load lasts).
        assert wal_frames(path) < 10
    finally:
        reader.close()
        database.dispose()


# The checkpointer's period: SQLite's own default, as WALCheckpointer says.
CHECKPOINT_PERIOD = 1000


def create_enqueued_table(database: SQLiteDatabase) -> None:
    with database.write_engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE enqueued (n INTEGER PRIMARY KEY, payload TEXT)")


def enqueue(database: SQLiteDatabase, n: int) -> None:
    """What a persisted add_task commits, near enough."""
    database.commit_one("INSERT INTO enqueued VALUES (?, ?)", (n, "x" * 500))
