"""SQLite: what makes taskflow fast on one file, all of it behind the hooks of engine.Database.

- One write connection per process, taken in turn, with `BEGIN IMMEDIATE` (SQLiteDatabase).
- The enqueue's commit goes straight to the driver with a precompiled statement (`commit_one`).
- WAL checkpoints run on a thread of their own, never inside a commit (WALCheckpointer).
- Python 3.11's slow bind of None and bool is skipped (bind_none_and_bool_directly) and times
  are formatted from a cache of recent seconds (`_sqlite_time`).
- Each process commits its persisted enqueues into an intake file of its own first (intake.py):
  `open` opens it, `record_durably` commits a row there, `written` deletes what a batch moved,
  `adopt_orphans` moves what dead processes left, `close` closes it.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, create_engine, event, insert
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool

from . import intake
from .engine import Database
from .writes import CHUNK, INTAKE, TASKS, compile_hot

logger = logging.getLogger("taskflow.store")

# The key of a new row that names its row in this process's intake file (absent for others).
_INTAKE_SEQ = "_intake_seq"


def open_sqlite(url: URL) -> Database:
    """A SQLite file's database, or the in-memory one for a URL without a file."""
    bind_none_and_bool_directly()
    if not url.database or url.database == ":memory:":
        return MemoryDatabase(url)
    return SQLiteDatabase(url)


def _enable_wal(cursor: Any) -> None:
    """WAL: readers (the dashboard) never block the writer, and the writer never blocks them.

    Turning a new file to WAL needs it to itself, and SQLite does not wait for that: a second
    process starting on the same new file finds the first one's migration in the way and is
    told "database is locked" at once. It waits here, as long as the busy timeout below.
    """
    deadline = time.monotonic() + 30
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_pragmas(dbapi_connection: Any) -> None:
    cursor = dbapi_connection.cursor()
    _enable_wal(cursor)
    # NORMAL is durable across process crashes (kill -9) in WAL mode; an OS crash may lose
    # the last commits, which the at-least-once contract then re-runs.
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Wait up to 30 s for another process's write lock instead of failing at once with
    # "database is locked" (the 5 s default is too short on a loaded machine).
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def bind_none_and_bool_directly() -> None:
    """Spare Python 3.11's sqlite3 its slow path for None and bool parameters.

    3.11 sends every parameter that is not exactly int, float, str or bytearray through its
    adapter lookup, and a miss there formats an AttributeError message and throws it away,
    for each value; a task row binds a dozen NULLs and two bools. An adapter found
    in the registry skips the miss. These bind what sqlite3 binds anyway (NULL, 0 or 1), so
    nothing changes for the rest of the process except speed. Python 3.12 fixed the lookup,
    and there an adapter would only add a call; an adapter someone registered is kept.
    """
    if sys.version_info >= (3, 12):
        return
    # `{}.get` is a C-level callable that returns None for any argument.
    adapters: tuple[tuple[type, Callable[[Any], Any]], ...] = ((type(None), {}.get), (bool, int))
    for kind, adapter in adapters:
        if (kind, sqlite3.PrepareProtocol) not in sqlite3.adapters:
            sqlite3.register_adapter(kind, adapter)


# "YYYY-MM-DD HH:MM:SS" of recent seconds. Formatting an aware datetime costs twice what gluing
# the microseconds onto a cached prefix does, and a task row carries up to five times. Any
# thread may use it: an entry is only ever right for its own key.
_second_prefix: dict[tuple[int, int, int, int], str] = {}


def _sqlite_time(value: datetime) -> str:
    """The text form SQLAlchemy's SQLite DateTime writes: UTC, no offset, microseconds always."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    second = (value.toordinal(), value.hour, value.minute, value.second)
    prefix = _second_prefix.get(second)
    if prefix is None:
        prefix = value.isoformat(" ", "seconds")[:19] + "."
        if len(_second_prefix) > 64:
            _second_prefix.clear()
        _second_prefix[second] = prefix
    # Six digits, zero-padded: cheaper than the format spec `:06d`, which takes int's slow
    # formatting path.
    return prefix + str(1_000_000 + value.microsecond)[1:]


class WALCheckpointer:
    """Copies the WAL back into the database file on a thread of its own, never in a commit.

    SQLite's automatic checkpoint runs inside the commit that crosses its threshold, with two
    fsyncs, on whatever thread committed: the event loop, for a persisted enqueue. Our write
    connection turns it off and counts commits instead; every `every_commits` a short-lived
    thread checkpoints on a connection of its own. One runs at a time.

    The WAL file starts over from its beginning only when a write begins after a checkpoint
    that caught up with every frame; under a steady stream of commits a checkpoint running
    beside them never does, and the file would grow without end. So the bulk is copied while
    requests go on committing (PASSIVE waits for no one), and a last round, with this process's
    writes held back, copies the few frames committed meanwhile.

    Every 1,000 commits, SQLite's own default period (a commit of an enqueue is a page or two,
    so the WAL stays a few MB): each checkpoint fsyncs twice and holds writes for a moment, and
    every 100 commits that cost the enqueues beside it about as much as their own commits.
    """

    def __init__(
        self, path: str, hold_writes: Callable[[], AbstractContextManager[Any]], *, every_commits: int = 1000
    ) -> None:
        self._path = path
        self._hold_writes = hold_writes
        self._every = every_commits
        self._commits = 0  # approximate across threads, which is all a trigger needs
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._connection: sqlite3.Connection | None = None

    def committed(self) -> None:
        self._commits += 1
        if self._commits >= self._every:
            self.start()

    def start(self) -> None:
        """Checkpoint now on a new thread, unless one is running already."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._commits = 0
            self._thread = threading.Thread(target=self._checkpoint, name="taskflow-checkpoint", daemon=True)
            self._thread.start()

    def _checkpoint(self) -> None:
        try:
            if self._connection is None:
                self._connection = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
            if not self._round(self._connection):
                with self._hold_writes():
                    self._round(self._connection)
        except sqlite3.Error as error:
            # The WAL keeps every commit; the next checkpoint copies what this one could not.
            logger.warning("taskflow: WAL checkpoint of %s failed (retried later): %s", self._path, error)

    @staticmethod
    def _round(connection: sqlite3.Connection) -> bool:
        """One PASSIVE checkpoint; True if another connection's checkpoint was in the way."""
        [(busy, _frames, _copied)] = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        return bool(busy)

    def close(self) -> None:
        """Wait for a running checkpoint and close its connection (a later commit reopens it)."""
        with self._lock:
            thread = self._thread
            if thread is not None:
                thread.join()
            if self._connection is not None:
                self._connection.close()
                self._connection = None


class SQLiteDatabase(Database):
    """A SQLite file: one write connection per process, taken in turn, and pooled readers.

    SQLite lets one writer in at a time anyway. Sharing one connection keeps its page cache
    warm: with a connection per thread, every commit by one made the other re-read the pages
    it touched. It also lets the enqueue commit go straight to the driver (`commit_one`).
    """

    single_writer = True
    encode_time = staticmethod(_sqlite_time)

    def __init__(self, url: URL) -> None:
        super().__init__(url)
        columns: dict[str, Any] = {column.name: bindparam(column.name) for column in INTAKE.c if column.name != "seq"}
        self._insert_intake = compile_hot(insert(INTAKE).values(columns), self.write_engine.dialect)
        #: This process's intake file while its task manager runs (see intake.py).
        self.intake: intake.IntakeFile | None = None

    @property
    def intake_folder(self) -> Path:
        """Where the processes' intake files live."""
        return intake.intake_folder(str(self.url.database))

    def intake_file(self, owner: str) -> intake.IntakeFile:
        """The intake file of the process whose task manager is `owner` (not opened)."""
        return intake.IntakeFile(self.intake_folder / intake.file_name(owner), self._insert_intake, self.encode_time)

    def open(self, owner: str, *, stale_after: float) -> None:
        """Open this process's intake file, after moving what an earlier start of this manager left."""
        if self.intake is not None:
            return
        file = self.intake_file(owner)
        # Other processes' files are the lease keeper's, whose first recovery runs at once.
        self._adopt(intake.orphans([file.path] if file.path.exists() else [], stale_after=stale_after))
        file.open()
        self.intake = file

    def record_durably(self, row: dict[str, Any]) -> bool:
        """Commit the row into this process's intake file; the row remembers its seq there."""
        file = self.intake
        if file is None:
            return False
        row[_INTAKE_SEQ] = file.add(row)
        return True

    def written(self, rows: list[dict[str, Any]]) -> None:
        file = self.intake
        moved = [row[_INTAKE_SEQ] for row in rows if _INTAKE_SEQ in row]
        if moved and file is not None:
            file.remove(moved)

    def adopt_orphans(self, *, stale_after: float) -> int:
        """Move the rows of dead processes' intake files into taskflow_tasks (pending, no owner:
        the take-over claims them next) and delete the files."""
        own = self.intake.path if self.intake is not None else None
        return self._adopt(intake.orphans(intake.files(self.intake_folder, skip=own), stale_after=stale_after))

    def _adopt(self, orphans: Iterator[intake.Orphan]) -> int:
        moved = 0
        for orphan in orphans:
            rows = orphan.rows()
            if rows:
                with self.serialised_writes(), self.write_engine.begin() as connection:
                    moved += _insert_adopted(connection, rows)
            orphan.discard()
        return moved

    def close(self) -> int:
        """Close the intake file: deleted if every row was moved, kept for recovery if not."""
        file, self.intake = self.intake, None
        return 0 if file is None else file.close()

    def _create_write_engine(self) -> Engine:
        if self.url.database and self.url.database != ":memory:":
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(self.url, connect_args={"check_same_thread": False, "timeout": 30}, poolclass=StaticPool)
        self._driver_connection: Any = None
        self.checkpointer = WALCheckpointer(str(self.url.database), self.serialised_writes)

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
            dbapi_connection.isolation_level = None
            _sqlite_pragmas(dbapi_connection)
            # Checkpoints run on the checkpointer's thread, not inside our commits.
            dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")
            self._driver_connection = dbapi_connection

        @event.listens_for(engine, "commit")
        def _commit(_connection: Any) -> None:
            self.checkpointer.committed()

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            # IMMEDIATE takes the write lock up front, so a guarded read-then-update (claims,
            # recovery) is atomic across processes and never fails half-way with SQLITE_BUSY.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def commit_one(self, sql: str, params: Any) -> None:
        # The same transaction as a write_engine.begin(), without SQLAlchemy's connection and
        # transaction objects, which dominate a single-row commit. Errors are raised
        # as SQLAlchemy's, like every other write.
        with self.serialised_writes():
            driver = self._driver_connection
            if driver is None:  # not connected yet: the pool's first checkout connects
                with self.write_engine.connect():
                    driver = self._driver_connection
            try:
                driver.execute("BEGIN IMMEDIATE")
                try:
                    driver.execute(sql, params)
                    driver.execute("COMMIT")
                    self.checkpointer.committed()
                except BaseException:
                    if driver.in_transaction:
                        driver.execute("ROLLBACK")
                    raise
            except sqlite3.Error as error:
                # The wrapper SQLAlchemy itself picks for a driver error (IntegrityError, ...).
                raise DBAPIError.instance(sql, params, error, sqlite3.Error) from error

    def dispose(self) -> None:
        self.close()
        # The one write connection may be in use by another thread: close it between writes.
        self.checkpointer.close()
        with self.serialised_writes():
            self._driver_connection = None
            super().dispose()

    def _create_read_engine(self) -> Engine:
        engine = create_engine(self.url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            _sqlite_pragmas(dbapi_connection)

        return engine


class MemoryDatabase(Database):
    """`TaskManager()` with no store: one in-memory SQLite connection, gone when the process ends."""

    single_connection = True
    encode_time = staticmethod(_sqlite_time)

    def _create_write_engine(self) -> Engine:
        return create_engine("sqlite://", connect_args={"check_same_thread": False}, poolclass=StaticPool)


def _insert_adopted(connection: Connection, rows: list[dict[str, Any]]) -> int:
    """Insert rows taken from a dead process's intake file; ids the task table has already (a
    batch moved them before the process died) are skipped. Returns how many went in."""
    inserted = 0
    for start in range(0, len(rows), CHUNK):
        # INSERT OR IGNORE skips a primary key the table has already.
        inserted += connection.execute(insert(TASKS).prefix_with("OR IGNORE"), rows[start : start + CHUNK]).rowcount
    return inserted
