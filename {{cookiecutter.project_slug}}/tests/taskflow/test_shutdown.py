"""Shutdown stays bounded even when the database no longer answers."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest

from app.taskflow import ManagedBackgroundTasks, TaskManager
from app.taskflow import runtime as runtime_module


async def test_shutdown_gives_up_on_a_locked_database_instead_of_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(runtime_module, "FINAL_WRITES_TIMEOUT", 1.0)
    path = tmp_path / "tasks.db"
    manager = TaskManager(database_url=f"sqlite:///{path}", poll_interval=0.05, shutdown_timeout=0.5)

    @manager.task(persist=True)
    async def quick() -> None:
        return None

    await manager.start()
    tasks = ManagedBackgroundTasks(manager)
    tasks.add_task(quick)  # committed before the lock
    locker = sqlite3.connect(path, isolation_level=None, timeout=0)
    locker.execute("BEGIN EXCLUSIVE")  # from now on no write can get through
    try:
        await tasks()
        started = time.monotonic()
        await manager.stop()
        elapsed = time.monotonic() - started
    finally:
        locker.execute("ROLLBACK")
        locker.close()
        manager.store.dispose()
    assert elapsed < 10, f"shutdown took {elapsed:.1f}s"
    assert any(
        record.levelno == logging.ERROR and "did not take the last task updates" in record.getMessage()
        for record in caplog.records
    )
