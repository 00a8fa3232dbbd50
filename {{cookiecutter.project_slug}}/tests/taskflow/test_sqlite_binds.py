"""None and bool parameters on SQLite: same values bound, without Python 3.11's slow adapter miss."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.taskflow.store.engine import open_database

KEYS = [(type(None), sqlite3.PrepareProtocol), (bool, sqlite3.PrepareProtocol)]


@pytest.fixture
def no_adapters() -> Iterator[None]:
    """sqlite3's adapter registry is process-wide: start each test without ours, and put back what was there."""
    saved = {key: sqlite3.adapters[key] for key in KEYS if key in sqlite3.adapters}
    for key in KEYS:
        sqlite3.adapters.pop(key, None)
    yield
    for key in KEYS:
        sqlite3.adapters.pop(key, None)
    sqlite3.adapters.update(saved)


def open_and_close(url: str | None) -> None:
    open_database(url).dispose()


def test_adapters_are_registered_only_on_the_python_that_needs_them(no_adapters: None, tmp_path: Path) -> None:
    open_and_close(f"sqlite:///{tmp_path / 'tasks.db'}")

    registered = [key in sqlite3.adapters for key in KEYS]
    assert registered == [sys.version_info < (3, 12)] * 2


def test_none_and_bool_still_bind_as_null_and_integers(no_adapters: None, tmp_path: Path) -> None:
    open_and_close(f"sqlite:///{tmp_path / 'tasks.db'}")

    connection = sqlite3.connect(":memory:")
    try:
        row = connection.execute(
            "SELECT typeof(?), typeof(?), ?, typeof(?), ?", (None, True, True, False, False)
        ).fetchone()
    finally:
        connection.close()
    assert row == ("null", "integer", 1, "integer", 0)


def test_the_in_memory_store_registers_them_too(no_adapters: None) -> None:
    open_and_close("sqlite://")
    open_and_close(None)

    assert all(key in sqlite3.adapters for key in KEYS) == (sys.version_info < (3, 12))


def test_postgresql_leaves_sqlite3_alone(no_adapters: None) -> None:
    # Building the engine does not connect, so no server is needed to check this.
    open_and_close("postgresql+psycopg://postgres@127.0.0.1:5432/postgres")

    assert not any(key in sqlite3.adapters for key in KEYS)


def test_an_adapter_the_application_registered_is_kept(no_adapters: None, tmp_path: Path) -> None:
    def yes_or_no(value: bool) -> str:
        return "yes" if value else "no"

    sqlite3.register_adapter(bool, yes_or_no)

    open_and_close(f"sqlite:///{tmp_path / 'tasks.db'}")

    assert sqlite3.adapters[(bool, sqlite3.PrepareProtocol)] is yes_or_no
