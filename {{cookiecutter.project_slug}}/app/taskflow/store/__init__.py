"""The task store: SQL tables behind a small set of named operations.

`Store` owns the engines (see engine.py) and runs each operation in its own short transaction.
Writes of the task lifecycle live in writes.py, lease handling in leases.py, reads in queries.py,
and the deletion of old finished tasks in retention.py.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import insert, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from .. import migrations
from ..models import AuditEntry, TaskStatus, utcnow
from ..storable import TEXT_LIMITS, storable_text, storable_values
from . import intake, leases, queries, retention
from .engine import Database, open_database
from .queries import TaskFilter
from .writes import INTAKE_SEQ, TASKS, Batch, BatchResult, Finish, Progress, Statements, apply_batch

T = TypeVar("T")

__all__ = [
    "INTAKE_SEQ",
    "Batch",
    "BatchResult",
    "DuplicateTask",
    "Finish",
    "Progress",
    "Store",
    "TaskFilter",
    "leases",
    "open_store",
    "queries",
]


class DuplicateTask(Exception):
    """A task with this idempotency key exists already."""

    def __init__(self, task_id: str) -> None:
        super().__init__(task_id)
        self.task_id = task_id


class Store:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.statements = Statements(database.write_engine.dialect, database.encode_time)
        # This process's intake file while the manager runs (SQLite files only; see intake.py).
        self.intake: intake.IntakeFile | None = None

    @property
    def dialect(self) -> str:
        return self.database.dialect

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        with self.database.serialised_writes(), self.database.write_engine.begin() as connection:
            yield connection

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        with self.database.serialised(), self.database.read_engine.connect() as connection:
            yield connection

    def write(self, operation: Callable[[Connection], T]) -> T:
        with self.writing() as connection:
            return operation(connection)

    def read(self, operation: Callable[[Connection], T]) -> T:
        with self.reading() as connection:
            return operation(connection)

    def create_tables(self) -> None:
        """Apply taskflow's pending migrations (migrations/), made once however many processes start."""
        with self.database.serialised_writes():
            migrations.upgrade(self.database.write_engine)

    def check_schema(self) -> None:
        """Raise migrations.SchemaBehind, one line naming the command to run, unless the tables are current."""
        with self.database.serialised():
            migrations.check(self.database.read_engine)

    def dispose(self) -> None:
        self.close_intake()
        self.database.dispose()

    # -- enqueue -----------------------------------------------------------------------------

    def insert_task(self, row: dict[str, Any], *, session: Session | None = None) -> None:
        """Insert a new row, committed before returning (or inside the caller's session).

        Raises DuplicateTask when the idempotency key is taken.
        """
        if session is not None:
            # Transactional enqueue: the row commits (or rolls back) with the caller's work.
            session.execute(insert(TASKS).values(**storable_values(row)))
            return
        try:
            statement = self.statements.insert_task
            self.database.commit_one(statement.sql, statement.params(row, self.statements.encode_time))
        except IntegrityError:
            key = row.get("idempotency_key")
            stored = key and storable_text(key, TEXT_LIMITS["idempotency_key"])
            existing = stored and self.read(lambda c: queries.find_by_idempotency_key(c, stored))
            if existing:
                raise DuplicateTask(existing) from None
            raise

    def insert_intake(self, row: dict[str, Any]) -> None:
        """Commit a new persisted row into this process's intake file before returning.

        The row remembers its seq there: once a batch has moved it to taskflow_tasks, it is
        deleted from the file.
        """
        if self.intake is None:
            raise RuntimeError("taskflow: the intake is not open (the task manager is not running)")
        row[INTAKE_SEQ] = self.intake.add(row)

    def open_intake(self, owner: str, *, stale_after: float) -> None:
        """Open this process's intake file (SQLite files), after moving what dead processes left."""
        folder = self.database.intake_folder
        if folder is None or self.intake is not None:
            return
        path = folder / intake.file_name(owner)
        # An earlier start of this manager may have left rows in our file: moved first. Other
        # processes' files are the lease keeper's, whose first recovery runs at once.
        self._adopt(intake.orphans([path] if path.exists() else [], stale_after=stale_after))
        self.intake = intake.IntakeFile(path, self.statements.insert_intake, self.statements.encode_time)
        self.intake.open()

    def close_intake(self) -> int:
        """Close the intake file: deleted if every row was moved, kept for recovery if not.
        Returns how many rows were left in it."""
        file, self.intake = self.intake, None
        return 0 if file is None else file.close()

    def adopt_intake_files(self, *, stale_after: float) -> int:
        """Move the rows of dead processes' intake files into taskflow_tasks (pending, no owner:
        the take-over claims them next) and delete the files. Returns how many rows moved."""
        folder = self.database.intake_folder
        if folder is None:
            return 0
        own = self.intake.path if self.intake is not None else None
        return self._adopt(intake.orphans(intake.files(folder, skip=own), stale_after=stale_after))

    def _adopt(self, orphans: Iterator[intake.Orphan]) -> int:
        moved = 0
        for orphan in orphans:
            rows = orphan.rows()
            if rows:
                moved += self.write(partial(leases.insert_adopted, rows=rows))
            orphan.discard()
        return moved

    def find_by_idempotency_key(self, key: str) -> str | None:
        # Looked up as it was stored (made storable on its way in).
        stored = storable_text(key, TEXT_LIMITS["idempotency_key"])
        return self.read(lambda c: queries.find_by_idempotency_key(c, stored))

    def apply(self, batch: Batch, *, owner: str) -> BatchResult:
        # The new rows' driver form is made before the transaction, which holds up this
        # process's other writes (persisted enqueues on the event loop) while it runs.
        new_rows = self.statements.new_rows(batch.inserts)
        now = utcnow()
        result = self.write(lambda c: apply_batch(c, batch, self.statements, owner=owner, now=now, new_rows=new_rows))
        moved = [row[INTAKE_SEQ] for row in batch.inserts if INTAKE_SEQ in row]
        if moved and self.intake is not None:
            self.intake.remove(moved)
        return result

    # -- control -----------------------------------------------------------------------------

    def cancel_pending(self, task_id: str) -> bool:
        """PENDING -> CANCELLED in one guarded update; True if this call cancelled it."""
        now = utcnow()
        statement = (
            update(TASKS)
            .where(TASKS.c.id == task_id, TASKS.c.status == TaskStatus.PENDING.value)
            .values(status=TaskStatus.CANCELLED.value, finished_at=now, updated_at=now, cancel_requested=True)
        )
        return self.write(lambda c: c.execute(statement).rowcount == 1)

    def request_cancel(self, task_id: str) -> bool:
        """Flag a RUNNING row; its owner's control loop cancels it."""
        statement = (
            update(TASKS)
            .where(TASKS.c.id == task_id, TASKS.c.status == TaskStatus.RUNNING.value)
            .values(cancel_requested=True, updated_at=utcnow())
        )
        return self.write(lambda c: c.execute(statement).rowcount == 1)

    def delete_finished_before(self, cutoff: datetime, *, limit: int) -> int:
        """Delete up to `limit` of the oldest tasks finished before `cutoff` (see retention.py)."""
        return self.write(lambda c: retention.delete_finished_before(c, cutoff=cutoff, limit=limit))

    def add_audit(self, *, actor: str, action: str, task_id: str | None, detail: str | None = None) -> None:
        row = {"at": utcnow(), "actor": actor, "action": action, "task_id": task_id, "detail": detail}
        self.write(lambda c: c.execute(insert(AuditEntry.__table__).values(**row)))  # type: ignore[attr-defined]

    # -- reads -------------------------------------------------------------------------------

    def get(self, task_id: str) -> Any | None:
        return self.read(lambda c: queries.get_task(c, task_id))

    def list(self, task_filter: TaskFilter, *, limit: int, offset: int = 0) -> list[Any]:
        return self.read(lambda c: queries.list_tasks(c, task_filter, limit=limit, offset=offset))

    def count(self, task_filter: TaskFilter) -> int:
        return self.read(lambda c: queries.count_tasks(c, task_filter))

    def attempts(self, task_id: str) -> builtins.list[Any]:
        return self.read(lambda c: queries.list_attempts(c, task_id))


def open_store(database_url: str | None) -> Store:
    return Store(open_database(database_url))
