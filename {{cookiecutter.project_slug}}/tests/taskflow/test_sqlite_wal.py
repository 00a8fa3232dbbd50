"""SQLite's write-ahead log: checkpointed beside the requests, and kept from growing without end."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.taskflow import ManagedBackgroundTasks, TaskManager
from app.taskflow.store.engine import SQLiteDatabase


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
    assert manager.store.write(autocheckpoint) == 0


async def test_the_wal_starts_over_even_when_commits_land_during_the_checkpoint(
    manager: TaskManager, tmp_path: Path
) -> None:
    @manager.task(persist=True)
    async def durable(n: int) -> None:
        return None

    async with manager.lifespan():
        tasks = ManagedBackgroundTasks(manager)
        database = manager.store.database
        assert isinstance(database, SQLiteDatabase)
        checkpointer = database.checkpointer
        first_round = checkpointer._round

        def round_then_a_commit_lands(connection: sqlite3.Connection) -> bool:
            busy = first_round(connection)
            if checkpointer._round is round_then_a_commit_lands:
                del checkpointer._round  # back to the real rounds
                tasks.add_task(durable, -1)  # a request commits while the checkpoint runs
            return busy

        checkpointer._round = round_then_a_commit_lands  # type: ignore[method-assign]
        for n in range(120):  # crosses the checkpointer's threshold of 100 commits
            tasks.add_task(durable, n)
        checkpointer.close()  # waits for the checkpoint
        assert checkpointer.runs == 1
        tasks.add_task(durable, 120)
        # A WAL that started over holds only the last enqueue; one that did not still holds all
        # 120 (several frames each), and under steady load would grow for as long as it lasts.
        assert wal_frames(tmp_path / "tasks.db") < 20
        await tasks()
        await manager.wait_idle(timeout=30)
