"""SQLite's write-ahead log: checkpointed beside the requests, and kept from growing without end."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.taskflow import TaskManager
from app.taskflow.store.engine import open_database
from app.taskflow.store.sqlite import SQLiteDatabase

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


def test_the_wal_starts_over_even_when_commits_land_during_the_checkpoint(tmp_path: Path) -> None:
    # The database alone, with nothing else writing (a running manager's heartbeats would).
    path = tmp_path / "tasks.db"
    database = open_database(f"sqlite:///{path}")
    assert isinstance(database, SQLiteDatabase)
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        with database.write_engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE enqueued (n INTEGER PRIMARY KEY, payload TEXT)")

        def enqueue(n: int) -> None:  # what a persisted add_task commits, near enough
            database.commit_one("INSERT INTO enqueued VALUES (?, ?)", (n, "x" * 500))

        checkpointer = database.checkpointer
        threshold = checkpointer._every
        for n in range(threshold):  # crosses the threshold: a checkpoint starts on its own thread
            enqueue(n)
        checkpointer.close()  # waits for it
        assert checkpointer.runs == 1

        # What the first round cannot copy: commits that land while it runs. A reader's
        # snapshot stops a checkpoint at the same place, and unlike timing it is certain.
        checkpointer._every = 10**9  # from here on, checkpoints only when the test says so
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM enqueued").fetchall()
        for n in range(threshold, threshold + 100):
            enqueue(n)
        first_round = checkpointer._round

        def first_round_then_the_reader_leaves(connection: sqlite3.Connection) -> bool:
            busy = first_round(connection)
            if checkpointer._round is first_round_then_the_reader_leaves:
                del checkpointer._round  # back to the real rounds
                reader.execute("COMMIT")
            return busy

        checkpointer._round = first_round_then_the_reader_leaves  # type: ignore[method-assign]
        checkpointer.start()
        checkpointer.close()
        assert checkpointer.runs == 2
        enqueue(threshold + 100)
        # A WAL that started over holds only the last commit; one that did not still holds the
        # hundred before it (and under steady load would grow for as long as the load lasts).
        assert wal_frames(path) < 10
    finally:
        reader.close()
        database.dispose()
