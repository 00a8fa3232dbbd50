"""The base of every dialect's database, and open_database, which picks one from the URL.

`Database` holds a write engine and a read engine and the hooks through which `Store` lets a
dialect take shorter paths. Each hook's default is the plain path, so a dialect overrides only
what it speeds up: SQLite's optimisations live in sqlite.py, PostgreSQL's settings in
postgresql.py, and `Store` never asks which dialect it has.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any

from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError


class Database:
    """A write engine (short transactions, serialised on SQLite) and a read engine."""

    #: True when one connection serves everyone and calls must be serialised (in-memory SQLite).
    single_connection = False
    #: True when the process's writes share one connection, taken in turn (SQLite files).
    single_writer = False

    def __init__(self, url: URL) -> None:
        self.url = url
        self.write_engine = self._create_write_engine()
        self.read_engine = self._create_read_engine()
        self._lock = threading.RLock() if self.single_connection else None
        self._write_lock = self._lock or (threading.RLock() if self.single_writer else None)

    def _create_write_engine(self) -> Engine:
        raise NotImplementedError

    def _create_read_engine(self) -> Engine:
        return self.write_engine

    @staticmethod
    def encode_time(value: datetime) -> Any:
        """A datetime in the driver's form for hot statements (psycopg takes aware datetimes)."""
        return value

    def serialised(self) -> AbstractContextManager[Any]:
        """Held around every use of the engines when they share one connection."""
        return self._lock if self._lock is not None else nullcontext()

    def serialised_writes(self) -> AbstractContextManager[Any]:
        """Held around every write transaction when the process's writes share one connection."""
        return self._write_lock if self._write_lock is not None else nullcontext()

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    # -- hooks: the plain path by default; a dialect overrides what it makes faster -----------

    def commit_one(self, sql: str, params: Any) -> None:
        """Run one precompiled statement in a transaction of its own, committed before returning."""
        with self.serialised_writes(), self.write_engine.begin() as connection:
            connection.exec_driver_sql(sql, params)

    def open(self, owner: str, *, stale_after: float) -> None:
        """A task manager starts in this process as `owner`."""

    def record_durably(self, row: dict[str, Any]) -> bool:
        """Make a new persisted row durable outside the task table, for the writer's next batch to
        move in; False if this dialect cannot (the row is committed to the task table instead)."""
        return False

    def written(self, rows: list[dict[str, Any]]) -> None:
        """A batch committed these new rows to the task table (what record_durably kept may go)."""

    def adopt_orphans(self, *, stale_after: float) -> int:
        """Move into the task table what dead processes kept outside it; returns how many rows."""
        return 0

    def close(self) -> int:
        """The task manager stopped; returns how many rows stay outside the task table (for recovery)."""
        return 0

    def dispose(self) -> None:
        self.close()
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()


def open_database(database_url: str | None) -> Database:
    """Pick the dialect's database from the URL; None gives the in-memory store."""
    # The dialect modules build on Database: imported here, not at the top.
    from .postgresql import PostgresDatabase
    from .sqlite import open_sqlite

    try:
        url = make_url("sqlite://" if database_url is None else database_url)
    except ArgumentError as error:
        raise ValueError(
            f"taskflow: database_url {database_url!r} is not a database URL; use sqlite:///path/to/tasks.db, "
            "postgresql+psycopg://user:password@host/dbname, or None for an in-memory store"
        ) from error
    backend = url.get_backend_name()
    if backend == "sqlite":
        return open_sqlite(url)
    if backend == "postgresql":
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        return PostgresDatabase(url)
    raise ValueError(f"taskflow supports sqlite:/// and postgresql+psycopg:// database URLs, got {url.drivername!r}")
