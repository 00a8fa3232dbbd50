"""The task store: SQL tables behind one interface of named operations.

`Store` owns the database (engine.py) and runs each operation in its own short transaction.
Everything above it (manager, writer, runner, leases, retention, admin, metrics, cli) calls
these operations and never builds SQL: the SQL lives in this package's modules, the lifecycle
writes in writes.py, lease handling in leases.py, reads in queries.py, admin logins in
logins.py, periodic schedules in schedules.py, the limits of the claim in limits.py (rate
windows in rates.py) and the deletion of old finished tasks in retention.py.

The operations, by group:

- schema: create_tables, check_schema, dispose
- enqueue: open, close, enqueue, adopt_orphans, find_by_idempotency_key, apply (a batch
  of outcomes, claims and new rows)
- control: cancel_pending, request_cancel, delete_finished_before, add_audit
- leases: renew_leases, take_over_expired, claim_ownerless, interrupt_orphans, released_ids, live_owners,
  expire_owners, owned_unchanged_since, disown, release_leases, cancel_requests
- limits: running_of, rate_usage
- reads: get, list, count, attempts
- admin: summary_page, summaries, task_detail, list_audit, retryable_failed_ids
- bulk actions (bulk.py): ids_matching, delete_finished, count_finished_before
- admin logins: login_failures, count_login_failure, clear_login_failures, revoke_session,
  is_session_revoked
- metrics: status_snapshot, oldest_due_pending
- schedules: register_schedule, get_schedule, list_schedules, fire_schedule,
  set_schedule_paused

`reading()` and `writing()` hand out a raw connection for tests and one-off maintenance;
taskflow's own modules outside this package never use them (tests/taskflow/test_store_interface.py).

What a dialect does faster lives in its own module (sqlite.py, postgresql.py) behind the
hooks of engine.Database; `Store` never asks which dialect it has.

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
   (`adopt_orphans`, INSERT OR IGNORE: a row a batch moved already is skipped).
6. Fired by a schedule (`fire_schedule`): committed ownerless, as in 1, in the transaction whose
   compare-and-set moves the schedule past its due time, so each due time makes one row.

A row becomes RUNNING by a claim: in a batch for a row in the table (writes.claim), in the
writer for a row it still holds (Writer.claim_held, Writer.claim), which then goes in RUNNING,
or, for rows nobody owns, with the batch that takes them (`claim_ownerless`: a worker's intake).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import insert, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from .. import migrations
from ..models import AuditEntry, TaskStatus, utcnow
from ..rates import Rate, RateWindows, Usage
from ..storable import TEXT_LIMITS, storable_text, storable_values
from . import bulk, leases, limits, logins, queries, retention, schedules
from .engine import Database, open_database
from .leases import Claim
from .limits import TaskLimits
from .queries import StatusSnapshot, SummaryPage, TaskDetail, TaskFilter
from .rates import DatabaseRateWindows
from .writes import TASKS, Batch, BatchResult, Finish, Progress, Statements, apply_batch

T = TypeVar("T")

__all__ = [
    "Batch",
    "BatchResult",
    "Claim",
    "Finish",
    "NewRows",
    "Progress",
    "StatusSnapshot",
    "Store",
    "SummaryPage",
    "TaskDetail",
    "TaskFilter",
    "TaskLimits",
    "open_store",
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

    @property
    def shared(self) -> bool:
        """Whether other processes can open this database (False for the in-memory store)."""
        return not self.database.single_connection

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        with self.database.serialised_writes(), self.database.write_engine.begin() as connection:
            yield connection

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        with self.database.serialised(), self.database.read_engine.connect() as connection:
            yield connection

    def _write(self, operation: Callable[[Connection], T]) -> T:
        with self.writing() as connection:
            return operation(connection)

    def _read(self, operation: Callable[[Connection], T]) -> T:
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
            existing = stored and self._read(lambda c: queries.find_by_idempotency_key(c, stored))
            if existing:
                return str(existing)
            raise
        return str(row["id"])

    def adopt_orphans(self, *, stale_after: float) -> int:
        """Move the new rows dead processes kept outside the task table into it (pending, no
        owner: the take-over claims them next). Returns how many rows moved."""
        return self.database.adopt_orphans(stale_after=stale_after)

    def find_by_idempotency_key(self, key: str) -> str | None:
        # Looked up as it was stored (made storable on its way in).
        stored = storable_text(key, TEXT_LIMITS["idempotency_key"])
        return self._read(lambda c: queries.find_by_idempotency_key(c, stored))

    def apply(self, batch: Batch, *, owner: str) -> BatchResult:
        # The new rows' driver form is made before the transaction, which holds up this
        # process's other writes (persisted enqueues on the event loop) while it runs.
        new_rows = self.statements.new_rows(batch.inserts)
        now = utcnow()
        result = self._write(lambda c: apply_batch(c, batch, self.statements, owner=owner, now=now, new_rows=new_rows))
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
        return self._write(lambda c: c.execute(statement).rowcount == 1)

    def request_cancel(self, task_id: str) -> bool:
        """Flag a RUNNING row; its owner's control loop cancels it."""
        statement = (
            update(TASKS)
            .where(TASKS.c.id == task_id, TASKS.c.status == TaskStatus.RUNNING.value)
            .values(cancel_requested=True, updated_at=utcnow())
        )
        return self._write(lambda c: c.execute(statement).rowcount == 1)

    def delete_finished_before(self, cutoff: datetime, *, limit: int) -> int:
        """Delete up to `limit` of the oldest tasks finished before `cutoff` (see retention.py)."""
        return self._write(lambda c: retention.delete_finished_before(c, cutoff=cutoff, limit=limit))

    def add_audit(self, *, actor: str, action: str, task_id: str | None, detail: str | None = None) -> None:
        row = {"at": utcnow(), "actor": actor, "action": action, "task_id": task_id, "detail": detail}
        self._write(lambda c: c.execute(insert(AuditEntry.__table__).values(**row)))  # type: ignore[attr-defined]

    # -- leases (leases.py) ------------------------------------------------------------------

    def renew_leases(self, owner: str, *, until: datetime) -> int:
        """Extend every active lease `owner` holds to `until`; returns how many rows."""
        return self._write(lambda c: leases.renew(c, owner=owner, until=until))

    def take_over_expired(
        self,
        owner: str,
        *,
        until: datetime,
        limit: int,
        max_recoveries: int,
        names: Collection[str] | None = None,
        ownerless: bool = False,
    ) -> builtins.list[Any]:
        """Claim up to `limit` of other owners' persisted rows whose lease expired (leases.take_over_expired);
        with `ownerless`, put them back to PENDING with no owner (tasks with a concurrency limit)."""
        now = utcnow()
        return self._write(
            lambda c: leases.take_over_expired(
                c,
                owner=owner,
                now=now,
                until=until,
                limit=limit,
                max_recoveries=max_recoveries,
                names=names,
                ownerless=ownerless,
            )
        )

    def claim_ownerless(
        self,
        owner: str,
        *,
        until: datetime,
        limit: int,
        names: Collection[str] | None = None,
        limits: Mapping[str, TaskLimits] | None = None,
        rates: RateWindows | None = None,
    ) -> Claim:
        """Claim up to `limit` due PENDING rows nobody owns straight into RUNNING under `owner`,
        in one transaction whatever the batch size (leases.claim_ownerless); rows of the names in
        `limits` only within their concurrency and rate limits (limits.py; rate windows in
        `rates`, None: this database)."""
        windows = _rate_windows(rates)
        return self._write(
            lambda c: leases.claim_ownerless(
                c, owner=owner, until=until, limit=limit, names=names, limits=limits, rates=windows
            )
        )

    def rate_usage(self, name: str, rate: Rate, rates: RateWindows | None = None) -> Usage:
        """Starts of `name` in its current rate window (rates.py), and when the next is allowed."""
        windows = _rate_windows(rates)
        return self._read(lambda c: windows.usage(c, name=name, rate=rate, now=utcnow()))

    def interrupt_orphans(self, owner: str) -> int:
        """Other owners' non-persisted rows whose lease expired become INTERRUPTED; returns how many."""
        now = utcnow()
        return self._write(lambda c: leases.interrupt_orphans(c, owner=owner, now=now))

    def released_ids(
        self, *, limit: int, names: Collection[str] | None = None, due: datetime | None = None
    ) -> builtins.list[str]:
        """Persisted PENDING rows nobody owns (of `names`, due by `due`), highest priority first and
        oldest first within one: a read, no write lock."""
        return self._read(lambda c: leases.released_ids(c, limit=limit, names=names, due=due))

    def running_of(self, name: str, key: str | None) -> tuple[int, int]:
        """How many of task `name`, and of those with concurrency key `key`, run now (live lease)."""
        now = utcnow()
        return self._read(lambda c: limits.running_of(c, name=name, key=key, now=now))

    def live_owners(self) -> builtins.list[str]:
        """Owners holding an unexpired lease on an active row."""
        now = utcnow()
        return self._read(lambda c: leases.live_owners(c, now=now))

    def expire_owners(self, owners: builtins.list[str]) -> int:
        """End the leases of owners known to be dead, so their rows can be taken over now."""
        now = utcnow()
        return self._write(lambda c: leases.expire_owners(c, owners=owners, now=now))

    def owned_unchanged_since(self, owner: str, *, before: datetime) -> builtins.list[str]:
        """Ids of `owner`'s active rows that have not changed since `before`."""
        return self._read(lambda c: leases.owned_since(c, owner=owner, before=before))

    def disown(self, owner: str, task_ids: builtins.list[str], *, before: datetime) -> int:
        """Give up rows `owner` holds but no longer runs, unless they changed since `before`."""
        return self._write(lambda c: leases.disown(c, owner=owner, task_ids=task_ids, before=before))

    def release_leases(self, owner: str) -> tuple[int, int]:
        """At shutdown: persisted rows back to PENDING with no owner, the others INTERRUPTED.
        Returns (released, interrupted)."""
        now = utcnow()
        return self._write(lambda c: leases.release(c, owner=owner, now=now))

    def cancel_requests(self, owner: str) -> builtins.list[str]:
        """Ids of `owner`'s active rows that someone asked to cancel."""
        return self._read(lambda c: leases.cancel_requests(c, owner=owner))

    # -- reads -------------------------------------------------------------------------------

    def get(self, task_id: str) -> Any | None:
        return self._read(lambda c: queries.get_task(c, task_id))

    def list(self, task_filter: TaskFilter, *, limit: int, offset: int = 0, with_arguments: bool = False) -> list[Any]:
        """Task summaries (queries.SUMMARY_COLUMNS, plus `arguments` if asked), newest first."""
        return self._read(
            lambda c: queries.list_tasks(c, task_filter, limit=limit, offset=offset, with_arguments=with_arguments)
        )

    def count(self, task_filter: TaskFilter) -> int:
        return self._read(lambda c: queries.count_tasks(c, task_filter))

    def attempts(self, task_id: str) -> builtins.list[Any]:
        return self._read(lambda c: queries.list_attempts(c, task_id))

    # -- admin (queries.py) ------------------------------------------------------------------

    def summary_page(
        self, task_filter: TaskFilter, *, limit: int, offset: int, count: bool = True, count_cap: int | None = None
    ) -> SummaryPage:
        """Task summaries (queries.SUMMARY_COLUMNS) newest first and, with `count`, how many match
        (at most `count_cap` + 1 rows counted when set), in one transaction."""
        return self._read(
            lambda c: queries.summary_page(c, task_filter, limit=limit, offset=offset, count=count, count_cap=count_cap)
        )

    def summaries(self, task_ids: builtins.list[str]) -> builtins.list[Any]:
        """The summaries of these tasks (those that exist), in no particular order."""
        return self._read(lambda c: queries.get_summaries(c, task_ids))

    def task_detail(self, task_id: str, *, audit_limit: int = 50) -> TaskDetail | None:
        """The whole row, its attempt rows, the tasks that retry it and its newest audit entries."""
        return self._read(lambda c: queries.task_detail(c, task_id, audit_limit=audit_limit))

    def list_audit(
        self, *, limit: int, offset: int = 0, task_id: str | None = None, actor: str | None = None
    ) -> builtins.list[Any]:
        """Admin actions, newest first."""
        return self._read(lambda c: queries.list_audit(c, limit=limit, offset=offset, task_id=task_id, actor=actor))

    def retryable_failed_ids(self, task_filter: TaskFilter, *, limit: int) -> builtins.list[str]:
        """FAILED tasks matching the filter that no task retries yet, newest first."""
        return self._read(lambda c: queries.retryable_failed_ids(c, task_filter, limit=limit))

    # -- bulk actions (bulk.py) --------------------------------------------------------------

    def ids_matching(
        self, task_filter: TaskFilter, *, limit: int, statuses: Collection[TaskStatus] | None = None
    ) -> builtins.list[str]:
        """Up to `limit` ids of tasks matching the filter (and in one of `statuses`), newest first."""
        return self._read(lambda c: bulk.ids_matching(c, task_filter, statuses=statuses, limit=limit))

    def delete_finished(self, task_ids: builtins.list[str]) -> int:
        """Delete those of these tasks that are finished, with their attempts; pending and running
        ones are left alone. Returns how many went."""
        return self._write(lambda c: retention.delete_finished_ids(c, task_ids))

    def count_finished_before(self, cutoff: datetime, *, cap: int | None) -> tuple[int, bool]:
        """(count, exact) of the tasks delete_finished_before(cutoff) would delete, counting at
        most cap + 1 rows (None: all)."""
        return self._read(lambda c: bulk.count_finished_before(c, cutoff=cutoff, cap=cap))

    # -- admin logins (logins.py) ------------------------------------------------------------

    def login_failures(self, keys: Collection[str]) -> builtins.list[Any]:
        """Rows (key, failures, window_start) of these hashed keys."""
        return self._read(lambda c: logins.login_failures(c, keys))

    def count_login_failure(self, keys: Collection[str], *, now: float, window: float) -> None:
        """One more failed login for each hashed key, in one transaction any instance sees."""
        self._write(lambda c: logins.count_login_failure(c, keys, now=now, window=window))

    def clear_login_failures(self, key: str) -> None:
        self._write(lambda c: logins.clear_login_failures(c, key))

    def revoke_session(self, session_key: str, *, now: float, expires_at: float) -> None:
        """Record a logout (hashed session id) until the session would have expired anyway."""
        self._write(lambda c: logins.revoke_session(c, session_key, now=now, expires_at=expires_at))

    def is_session_revoked(self, session_key: str) -> bool:
        return self._read(lambda c: logins.is_session_revoked(c, session_key))

    # -- metrics (queries.py) ----------------------------------------------------------------

    def status_snapshot(self, *, window: int) -> StatusSnapshot:
        """Counts by status and the newest `window` succeeded and failed tasks, in one transaction."""
        return self._read(lambda c: queries.status_snapshot(c, window=window))

    def oldest_due_pending(self, now: datetime) -> datetime | None:
        """Since when the longest-waiting due PENDING task has been due (None when none waits)."""
        return self._read(lambda c: queries.oldest_due_pending(c, now=now))

    # -- schedules (schedules.py) ------------------------------------------------------------

    def register_schedule(self, name: str, *, kind: str, expression: str, timezone: str, first_run_at: datetime) -> Any:
        """Store a schedule's definition (kept next due time if unchanged); returns its row."""

        def register(connection: Connection) -> Any:
            return schedules.register(
                connection,
                name=name,
                kind=kind,
                expression=expression,
                timezone=timezone,
                first_run_at=first_run_at,
                now=utcnow(),
            )

        try:
            return self._write(register)
        except IntegrityError:  # another instance inserted it at the same moment: now it is there
            return self._write(register)

    def get_schedule(self, name: str) -> Any | None:
        return self._read(lambda c: schedules.get_schedule(c, name))

    def list_schedules(self) -> builtins.list[Any]:
        """Every schedule by name, with `last_status`: the status of its last run's task."""
        return self._read(schedules.list_schedules)

    def fire_schedule(
        self,
        name: str,
        *,
        due_at: datetime,
        next_run_at: datetime,
        run_at: datetime | None = None,
        row: dict[str, Any] | None = None,
    ) -> bool:
        """Route 6: move the schedule from `due_at` to `next_run_at` and insert `row` (the run of
        `run_at`) in one transaction; True only for the one caller whose compare-and-set won."""
        now = utcnow()
        return self._write(
            lambda c: schedules.fire(
                c, name=name, due_at=due_at, next_run_at=next_run_at, run_at=run_at, row=row, now=now
            )
        )

    def set_schedule_paused(self, name: str, *, paused: bool, next_run_at: datetime | None = None) -> bool:
        """Pause or resume a schedule (a resume may move its next due time); False if unknown."""
        now = utcnow()
        return self._write(
            lambda c: schedules.set_paused(c, name=name, paused=paused, next_run_at=next_run_at, now=now)
        )


def _rate_windows(rates: RateWindows | None) -> RateWindows:
    """The rate windows given (Redis), or by default this database's own table."""
    return rates if rates is not None else DatabaseRateWindows()


def open_store(database_url: str | None) -> Store:
    return Store(open_database(database_url))
