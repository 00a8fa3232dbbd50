"""The task store: SQL tables behind a small set of named operations.

`Store` owns the database (engine.py) and runs each operation in its own short transaction.
Writes of the task lifecycle live in writes.py, lease handling in leases.py, reads in queries.py,
and the deletion of old finished tasks in retention.py. What a dialect does faster lives in its
own module (sqlite.py, postgresql.py) behind the hooks of engine.Database; `Store` never asks
which dialect it has.

How a row enters taskflow_tasks. Every new row is built by models.new_task_row, and
`Store.enqueue` picks one of these routes for it (nothing else inserts a new task):

1. Committed at once (`commit_one`): no task manager runs here (the row waits ownerless for
   one), the task has an idempotency key (a duplicate must be refused now), or the task is
   persisted and the dialect cannot keep it durably elsewhere (PostgreSQL, in-memory SQLite).
2. In the caller's session (`session=`): it commits or rolls back with the caller's work.
3. Held by the writer for its next batch (writer.py): a persist=False task while the manager
   runs. Its claim, progress and outcome fold into the row, so a short task is one INSERT.
4. As 3, after the dialect made it durable: a persisted task on a SQLite file is committed
   into this process's intake file first (`record_durably`, see intake.py); the batch that
   moves it in tells the dialect (`written`), which deletes it there.
5. Adopted: rows a dead process left in its intake file are moved in by recovery
   (`adopt_intake_files`, INSERT OR IGNORE: a row a batch moved already is skipped).

A row becomes RUNNING by a claim: in a batch for a row in the table (writes.claim), or in the
writer for a row it still holds (Writer.claim_held, Writer.claim), which then goes in RUNNING.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import insert, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from .. import migrations
from ..models import AuditEntry, TaskStatus, utcnow
from ..storable import TEXT_LIMITS, storable_text, storable_values
from . import leases, queries, retention
from .engine import Database, open_database
from .queries import TaskFilter
from .writes import TASKS, Batch, BatchResult, Finish, Progress, Statements, apply_batch

T = TypeVar("T")

__all__ = [
    "Batch",
    "BatchResult",
    "Finish",
    "NewRows",
    "Progress",
    "Store",
    "TaskFilter",
    "leases",
    "open_store",
    "queries",
]


class NewRows(Protocol):
    """Takes new rows into its next batch (the writer): route 3 and 4 of the module docstring."""

    def insert(self, row: dict[str, Any]) -> None: ...


class Store:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.statements = Statements(database.write_engine.dialect, database.encode_time)

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
        self.database.dispose()

    # -- enqueue -----------------------------------------------------------------------------

    def open(self, owner: str, *, stale_after: float) -> None:
        """This process's task manager starts as `owner` (SQLite files open its intake file)."""
        self.database.open(owner, stale_after=stale_after)

    def close(self) -> int:
        """This process's task manager stopped. Returns how many new rows stay outside the task
        table (in the intake file), which the next recovery of any instance moves in."""
        return self.database.close()

    def enqueue(self, row: dict[str, Any], *, session: Session | None = None, writer: NewRows | None = None) -> str:
        """Make a new row (models.new_task_row) durable as its task needs, by one of the routes
        in this module's docstring; `writer` takes rows for its next batch (None: no manager runs).

        Returns the id of the task it stands for: the row's, or the task that holds its
        idempotency key already (then nothing is written).
        """
        key = row["idempotency_key"]
        if key is not None:
            existing = self.find_by_idempotency_key(key)
            if existing is not None:
                return existing
        if session is not None:
            if self.database.single_connection:
                raise ValueError("transactional enqueue (session=...) needs a database store, not the in-memory one")
            session.execute(insert(TASKS).values(**storable_values(row)))
        elif writer is not None and key is None and (not row["persist"] or self.database.record_durably(row)):
            writer.insert(row)
        else:
            return self._commit_new(row)
        return str(row["id"])

    def _commit_new(self, row: dict[str, Any]) -> str:
        """Insert a new row, committed before returning. Returns its id or, when its idempotency
        key was taken since the lookup, the id of the task that holds it."""
        try:
            statement = self.statements.insert_task
            self.database.commit_one(statement.sql, statement.params(row, self.statements.encode_time))
        except IntegrityError:
            key = row["idempotency_key"]
            stored = key and storable_text(key, TEXT_LIMITS["idempotency_key"])
            existing = stored and self.read(lambda c: queries.find_by_idempotency_key(c, stored))
            if existing:
                return str(existing)
            raise
        return str(row["id"])

    def adopt_intake_files(self, *, stale_after: float) -> int:
        """Move the new rows dead processes kept outside the task table into it (pending, no
        owner: the take-over claims them next). Returns how many rows moved."""
        return self.database.adopt_orphans(stale_after=stale_after)

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
        if batch.inserts:
            self.database.written(batch.inserts)
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
