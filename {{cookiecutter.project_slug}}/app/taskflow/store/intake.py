"""SQLite's intake: each process commits its persisted enqueues into a file only it opens.

A persisted `add_task` must commit before it returns, and on SQLite that commit is most of
what persisting costs a request. Into the shared database file it takes and drops SQLite's
locks (six `fcntl` calls a commit) and waits whenever the writer thread's batch holds the
write lock. So each process keeps a small SQLite file of its own next to the database,
`<database>-intake/<owner>.db`, opened with `locking_mode=EXCLUSIVE`: a commit there is an
append to one b-tree and a write to its WAL, with no lock calls and no one to wait for.

The writer thread moves the rows into `taskflow_tasks` in its next batch and then deletes them
here. The exclusive lock lives as long as the process: a file whose lock can be taken belongs
to a process that is gone, and recovery (in any process sharing the database) moves its rows
into the task table, skipping any a batch had moved already, and deletes the file. The table
is TaskIntake's, created from the model. Its one user is SQLiteDatabase (sqlite.py), which
drives it through the store's hooks.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.request import pathname2url

from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.schema import CreateTable

from ..models import new_task_row
from .hot import HotStatement
from .writes import INTAKE

logger = logging.getLogger("taskflow.store")

_CREATE = str(CreateTable(INTAKE, if_not_exists=True).compile(dialect=sqlite_dialect.dialect())).strip()
_SELECT = f"SELECT * FROM {INTAKE.name} ORDER BY seq"
_DELETE = f"DELETE FROM {INTAKE.name} WHERE seq IN (SELECT value FROM json_each(?))"
_COUNT = f"SELECT count(*) FROM {INTAKE.name}"
_TIMES = ("created_at", "next_run_at")

# Copy the WAL back into the file after this many commits (as SQLite's own default period).
CHECKPOINT_EVERY = 1000


def intake_folder(database_path: str) -> Path:
    return Path(f"{database_path}-intake")


def file_name(owner: str) -> str:
    """The owner id made safe as a file name (scope:pid:random, the scope may hold a slash)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", owner) + ".db"


def _configure(connection: sqlite3.Connection) -> None:
    # EXCLUSIVE before WAL: SQLite then keeps the WAL index in this process's memory (no -shm
    # file, no lock calls per transaction) and holds the file's lock until the connection closes.
    connection.execute("PRAGMA locking_mode=EXCLUSIVE")
    connection.execute("PRAGMA journal_mode=WAL")
    # As the database: durable across a process crash (kill -9); checkpoints are ours (below).
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA wal_autocheckpoint=0")


class IntakeFile:
    """This process's intake file: commit a row (event loop), delete moved rows (writer thread)."""

    def __init__(self, path: Path, statement: HotStatement, encode_time: Callable[[datetime], Any]) -> None:
        self.path = path
        self._statement = statement
        self._encode_time = encode_time
        self._connection: sqlite3.Connection | None = None
        # The enqueue and the writer's delete share one connection, taken in turn.
        self._lock = threading.Lock()
        self._unremoved: list[int] = []  # moved rows whose delete failed: tried again next time
        self._commits = 0

    def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as error:
            raise _cannot_open(self.path, error) from error
        try:
            # Small pages, because a commit writes whole pages to the WAL and these rows are a few
            # hundred bytes. Only a new file takes it; one being reopened keeps its own.
            connection.execute("PRAGMA page_size=1024")
            _configure(connection)  # entering WAL takes the lock, held from here on
            connection.execute(_CREATE)
        except sqlite3.Error as error:
            connection.close()
            raise _cannot_open(self.path, error) from error
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    def add(self, row: dict[str, Any]) -> int:
        """Commit the row; returns its seq (what the writer's batch removes once it is moved)."""
        params = self._statement.params(row, self._encode_time)
        with self._lock:
            connection = self._connection
            if connection is None:
                raise RuntimeError("taskflow: the intake file is closed (the task manager is not running)")
            # One statement in autocommit: its own transaction, committed when it returns (an
            # explicit BEGIN and COMMIT would only add two calls).
            seq = connection.execute(self._statement.sql, params).lastrowid
            self._commits += 1
        assert seq is not None
        return seq

    def remove(self, seqs: list[int]) -> None:
        """Delete rows the task table holds now. A failure is logged and retried with the next call:
        a row left here is harmless (recovery skips ids the task table has)."""
        with self._lock:
            connection = self._connection
            if connection is None:
                return
            seqs = self._unremoved + seqs
            try:
                connection.execute("BEGIN IMMEDIATE")
                # One statement for the batch's rows (an executemany stepped one per row).
                connection.execute(_DELETE, (json.dumps(seqs),))
                connection.execute("COMMIT")
                self._unremoved = []
                self._commits += 1
                if self._commits >= CHECKPOINT_EVERY:
                    # The WAL starts over once copied back; its fsyncs happen here, on the
                    # writer thread, never in an enqueue's commit.
                    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    self._commits = 0
            except sqlite3.Error as error:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                self._unremoved = seqs
                logger.warning("taskflow: could not clear moved rows from %s (retried later): %s", self.path, error)

    def rows_left(self) -> int:
        """Rows in the file: not moved yet, or moved with their delete still to retry."""
        with self._lock:
            if self._connection is None:
                return 0
            return int(self._connection.execute(_COUNT).fetchone()[0])

    def close(self) -> int:
        """Close; delete the file if every row was moved. Returns how many rows are left in it."""
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is None:
                return 0
            try:
                left = int(connection.execute(_COUNT).fetchone()[0])
                if left == len(self._unremoved):
                    # Every row left is in the task table already: delete the file while we hold
                    # its lock, so no one finds it half gone.
                    _unlink(self.path)
                    left = 0
            finally:
                connection.close()
        return left


def _cannot_open(path: Path, error: BaseException) -> RuntimeError:
    return RuntimeError(
        f"taskflow: cannot open this process's intake file {path} ({error}). Persisted tasks are committed "
        f"there first: the folder {path.parent} must be a folder this process can create and write, on the "
        "same machine as the database file (not a network file system)"
    )


def _unlink(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class Orphan:
    """Another process's intake file whose lock we hold: that process is gone."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._connection = connection

    def rows(self) -> list[dict[str, Any]]:
        """Its rows as pending task rows (what the task table takes)."""
        # By the columns the file has: one an older version wrote lacks the newer ones (as
        # `priority`), which then take the model's defaults.
        cursor = self._connection.execute(_SELECT)
        columns = [description[0] for description in cursor.description]
        return [_as_task_row(dict(zip(columns, values, strict=True))) for values in cursor]

    def is_set_up(self) -> bool:
        """Whether its process got as far as creating the table (it held the lock then)."""
        found = self._connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (INTAKE.name,)
        )
        return found.fetchone() is not None

    def discard(self) -> None:
        """Delete the file (its rows are in the task table now). Holding its lock while we do."""
        _unlink(self.path)


def _as_task_row(values: dict[str, Any]) -> dict[str, Any]:
    del values["seq"]
    for name in _TIMES:
        if values[name] is not None:
            values[name] = datetime.fromisoformat(values[name]).replace(tzinfo=UTC)
    # No owner and no lease: any instance's take-over claims it next (our own included, when
    # the file is one an earlier start of this manager left).
    values["owner"] = None
    return new_task_row(**values, persist=True)


def files(folder: Path, *, skip: Path | None) -> list[Path]:
    """The intake files in `folder`, but `skip` (this process's own, open)."""
    if not folder.is_dir():
        return []
    return [path for path in sorted(folder.glob("*.db")) if path != skip]


def orphans(paths: Iterable[Path], *, stale_after: float) -> Iterator[Orphan]:
    """Of these intake files, those whose lock we can take (their process is gone), one at a
    time, each locked while the caller has it.

    A file without the table is a process that died while opening it, or one opening it right
    now (it takes the lock a moment after creating the file): left alone until `stale_after`
    seconds old, then deleted. Two recoveries probing one file at the same moment may both find
    it busy, as if its process lived (the probe does not wait: a live process never lets go);
    the file is taken at the next round.
    """
    for path in paths:
        try:
            # mode=rw: a file deleted since the listing is not created again, empty.
            uri = f"file:{pathname2url(str(path))}?mode=rw"
            connection = sqlite3.connect(uri, uri=True, timeout=0, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA locking_mode=EXCLUSIVE")
        except sqlite3.Error:
            continue
        try:
            try:
                connection.execute("BEGIN IMMEDIATE")  # fails at once while its process lives
            except sqlite3.Error:
                continue
            orphan = Orphan(path, connection)
            if orphan.is_set_up():
                yield orphan
            elif _age(path) > stale_after:
                orphan.discard()
        finally:
            connection.close()


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
