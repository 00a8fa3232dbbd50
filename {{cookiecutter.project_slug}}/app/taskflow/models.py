"""SQLModel tables: the task row is the source of truth; attempts and audit entries hang off it."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, Index, Text, TypeDecorator, text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Aware UTC: the one time representation used everywhere in taskflow."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite (no time zones) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError(f"taskflow stores aware datetimes only, got naive {value!r}")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)


class TaskStatus(enum.StrEnum):
    # Waiting to run: new, delayed (next_run_at in the future) or waiting between retries.
    PENDING = "pending"
    # An attempt is running on the instance named by `owner`.
    RUNNING = "running"
    # Finished; the return value (bounded) is in `result`.
    SUCCESS = "success"
    # Gave up: retries exhausted, a give-up exception, or too many crash recoveries.
    FAILED = "failed"
    # Cancelled by a person or by code before it finished.
    CANCELLED = "cancelled"
    # A task with persist=False whose process stopped before it finished; never re-run.
    INTERRUPTED = "interrupted"

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_STATUSES


ACTIVE_STATUSES = frozenset({TaskStatus.PENDING, TaskStatus.RUNNING})
TERMINAL_STATUSES = frozenset(set(TaskStatus) - ACTIVE_STATUSES)

# Rows waiting with no instance to run them: released at a shutdown, or enqueued while none ran.
# Literal, not bound: SQLite (and a generic PostgreSQL plan) only use a partial index for a query
# whose WHERE repeats the index's condition word for word.
UNOWNED_PENDING = "status = 'pending' AND owner IS NULL"
UNOWNED_INDEX = "ix_taskflow_tasks_unowned"


class TaskRecord(SQLModel, table=True):
    """One enqueued task: written by add_task, updated on every transition."""

    __tablename__ = "taskflow_tasks"
    __table_args__ = (
        Index("ix_taskflow_tasks_created", "created_at"),
        Index("ix_taskflow_tasks_status_created", "status", "created_at"),
        Index("ix_taskflow_tasks_name_created", "name", "created_at"),
        # Recovery, heartbeats and cancel checks start from the (few) active rows through the
        # status index above and filter by lease or owner there: no index of their own, so an
        # enqueue writes one b-tree less and a heartbeat moves no index entries at all.
        # Most tasks have neither: partial indexes skip them, so a plain insert touches two
        # b-trees fewer (each is one more page to write at every commit).
        Index(
            "ux_taskflow_tasks_idempotency_key",
            "idempotency_key",
            unique=True,
            sqlite_where=text("idempotency_key IS NOT NULL"),
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        # The index of unowned waiting rows (UNOWNED_INDEX) follows the class: it names a column
        # in descending order, which needs the table's column object.
        Index(
            "ix_taskflow_tasks_retry_of",
            "retry_of",
            sqlite_where=text("retry_of IS NOT NULL"),
            postgresql_where=text("retry_of IS NOT NULL"),
        ),
    )

    id: str = Field(primary_key=True, max_length=36)
    name: str = Field(max_length=200)
    status: str = Field(default=TaskStatus.PENDING.value, max_length=16)
    # {"args": [...], "kwargs": {...}} as JSON; never a repr.
    arguments: str = Field(default='{"args": [], "kwargs": {}}', sa_column=Column(Text, nullable=False))
    persist: bool = False
    idempotency_key: str | None = Field(default=None, max_length=200)
    # Attempts started so far; the fencing number every write of a running attempt checks.
    attempt: int = 0
    max_attempts: int = 1
    # Failed attempts that were retried. Counted apart from `attempt`, which crashes and shutdowns
    # also advance, so a task never loses a retry to a restart.
    retries_used: int = 0
    # Times this task was taken over after its owner died while running it (counted apart from retries).
    recoveries: int = 0
    owner: str | None = Field(default=None, max_length=200)
    lease_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancel_requested: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    next_run_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    error_type: str | None = Field(default=None, max_length=200)
    error_message: str | None = Field(default=None, sa_column=Column(Text))
    traceback: str | None = Field(default=None, sa_column=Column(Text))
    result: str | None = Field(default=None, sa_column=Column(Text))
    progress_done: float | None = None
    progress_total: float | None = None
    progress_message: str | None = Field(default=None, max_length=500)
    # The task this one retries (manual retry of a failed task keeps the original).
    retry_of: str | None = Field(default=None, max_length=36)
    # Higher starts first among ready tasks (TaskOptions.priority or the enqueue's own).
    priority: int = 0
    # The key `max_concurrent_per_key` counts by (`options(concurrency_key=...)`); None: no key.
    concurrency_key: str | None = Field(default=None, max_length=200)


# Every instance's control loop looks here each tick for released rows to start at once; only
# unowned waiting rows are in it, so it stays tiny and a plain enqueue never touches it. In claim
# order (highest priority first, then oldest): a claim reads its batch off the front, no sort.
_TASKS_COLUMNS = TaskRecord.__table__.c  # type: ignore[attr-defined]
Index(
    UNOWNED_INDEX,
    _TASKS_COLUMNS.priority.desc(),
    _TASKS_COLUMNS.created_at,
    sqlite_where=text(UNOWNED_PENDING),
    postgresql_where=text(UNOWNED_PENDING),
)


def _new_row_defaults() -> dict[str, Any]:
    """Every column of taskflow_tasks with the value TaskRecord gives a new task (times apart).

    Read from the model, so a column a team adds to TaskRecord is in every new row too (the
    hot inserts bind every column).
    """
    return {
        name: field.default
        for name, field in TaskRecord.model_fields.items()
        if not field.is_required() and field.default_factory is None
    }


_NEW_ROW = _new_row_defaults()


def new_task_row(*, id: str, name: str, **values: Any) -> dict[str, Any]:
    """A new PENDING row of taskflow_tasks, every column present: the model's defaults, then `values`.

    The one place a new task row is built (enqueue, retry, intake adoption, tests, benchmarks).
    `created_at` defaults to now and `updated_at` to `created_at`.
    """
    created_at = values.pop("created_at", None) or utcnow()
    return {**_NEW_ROW, "id": id, "name": name, "created_at": created_at, "updated_at": created_at, **values}


class TaskIntake(SQLModel, table=True):
    """A persisted task enqueued on SQLite, committed here first and moved to taskflow_tasks soon after.

    Not in the database: each process has this table in an intake file of its own, which only
    it opens (see store/intake.py). An append at the end of one b-tree, with no lock shared
    with anyone, is the cheapest commit SQLite has: the enqueue in the request writes one page
    instead of five (table, primary key and three list indexes) and never waits for another
    writer. The process moves the row in a batch before the task starts, then deletes it
    here; recovery moves the rows of processes that died first.
    """

    __tablename__ = "taskflow_intake"

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(max_length=36)
    name: str = Field(max_length=200)
    arguments: str = Field(sa_column=Column(Text, nullable=False))
    max_attempts: int = 1
    owner: str = Field(max_length=200)
    created_at: datetime = Field(sa_type=UTCDateTime)
    next_run_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    priority: int = 0


class TaskAttempt(SQLModel, table=True):
    """One finished (or abandoned) attempt of a task, with its captured log records."""

    __tablename__ = "taskflow_attempts"

    id: int | None = Field(default=None, primary_key=True)
    task_id: str = Field(max_length=36, index=True)
    number: int
    owner: str | None = Field(default=None, max_length=200)
    status: str = Field(max_length=16)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    duration: float | None = None
    error_type: str | None = Field(default=None, max_length=200)
    error_message: str | None = Field(default=None, sa_column=Column(Text))
    traceback: str | None = Field(default=None, sa_column=Column(Text))
    # JSON list of {"at", "level", "logger", "message"}; bounded per attempt.
    logs: str | None = Field(default=None, sa_column=Column(Text))


class AuditEntry(SQLModel, table=True):
    """An admin action (retry, cancel, bulk retry), kept in the database."""

    __tablename__ = "taskflow_audit"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=50)
    task_id: str | None = Field(default=None, max_length=36, index=True)
    detail: str | None = Field(default=None, sa_column=Column(Text))


class AdminLoginFailure(SQLModel, table=True):
    """Failed admin logins of one user name or client address in the current window (its key is a hash)."""

    __tablename__ = "taskflow_admin_login_failures"

    key: str = Field(primary_key=True, max_length=80)
    failures: int
    window_start: float = Field(index=True)  # time.time() of the window's first failure


class AdminRevokedSession(SQLModel, table=True):
    """An admin session ended by logout (its id hashed), kept until it would have expired anyway."""

    __tablename__ = "taskflow_admin_revoked_sessions"

    session_id: str = Field(primary_key=True, max_length=80)
    expires_at: float = Field(index=True)  # time.time() when the session would have ended


class TaskSchedule(SQLModel, table=True):
    """A periodic schedule (@task_manager.schedule) and the next due time any instance fires.

    `next_run_at` is the compare-and-set guard: the instance whose UPDATE moves it on from the
    due time fires that due time, so each one runs once however many instances share the table.
    """

    __tablename__ = "taskflow_schedules"

    name: str = Field(primary_key=True, max_length=200)
    kind: str = Field(max_length=16)  # "every" (seconds) or "cron"
    expression: str = Field(max_length=200)
    timezone: str = Field(max_length=64)
    next_run_at: datetime = Field(sa_type=UTCDateTime)
    last_run_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_task_id: str | None = Field(default=None, max_length=36)
    paused: bool = False
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class TaskRateStart(SQLModel, table=True):
    """One start of a rate-limited task (rates.py) in its current window; older ones are deleted
    by the next claim of that task. Unused when the windows are kept in Redis."""

    __tablename__ = "taskflow_rate_starts"
    __table_args__ = (Index("ix_taskflow_rate_starts_name_started", "name", "started_at"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    started_at: datetime = Field(sa_type=UTCDateTime)


# In the database. TaskIntake's table lives in each process's intake file (store/intake.py).
TASKFLOW_TABLES = [
    TaskRecord.__table__,  # type: ignore[attr-defined]
    TaskAttempt.__table__,  # type: ignore[attr-defined]
    AuditEntry.__table__,  # type: ignore[attr-defined]
    AdminLoginFailure.__table__,  # type: ignore[attr-defined]
    AdminRevokedSession.__table__,  # type: ignore[attr-defined]
    TaskSchedule.__table__,  # type: ignore[attr-defined]
    TaskRateStart.__table__,  # type: ignore[attr-defined]
]
