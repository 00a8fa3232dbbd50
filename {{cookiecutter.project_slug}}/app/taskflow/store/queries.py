"""Read queries for the admin and the JSON API: paginated, filtered, index-friendly.

Every list is ORDER BY created_at DESC with a LIMIT, so SQLite and PostgreSQL walk one of the
(status|name, created_at) indexes backwards and stop after a page, however large the table.
Counts are capped for the same reason (see count_tasks_capped).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, literal, or_, select
from sqlalchemy.engine import Connection

from ..models import AuditEntry, TaskStatus
from .writes import ATTEMPTS, TASKS

AUDIT = AuditEntry.__table__  # type: ignore[attr-defined]

# A task summary: what a list row, an admin fragment and the event stream show. Never the big,
# caller-controlled text columns (arguments, result, traceback; attempt logs live in another
# table), so a page costs the same whatever the tasks were given or returned.
SUMMARY_COLUMNS = [
    column
    for column in TASKS.c
    if column.name not in {"arguments", "traceback", "result", "lease_expires_at", "cancel_requested", "updated_at"}
]


@dataclass(frozen=True, kw_only=True)
class TaskFilter:
    """Which tasks a list shows; every field left at None means "any"."""

    # One status: a TaskStatus, or its value as text ("failed").
    status: TaskStatus | str | None = None
    # The exact task name (the registered name, e.g. "send_email").
    name: str | None = None
    # Created at or after / before these moments (aware datetimes).
    since: datetime | None = None
    until: datetime | None = None
    # Case-insensitive text search in the id, the name and the error message.
    text: str | None = None
    # Priority at or above this (e.g. 1: every task enqueued above the default).
    min_priority: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.status, str) and not isinstance(self.status, TaskStatus):
            try:
                object.__setattr__(self, "status", TaskStatus(self.status))
            except ValueError:
                known = ", ".join(status.value for status in TaskStatus)
                raise ValueError(f"TaskFilter status {self.status!r} is not one of {known}") from None

    def clauses(self) -> list[Any]:
        clauses: list[Any] = []
        if self.status is not None:
            clauses.append(TASKS.c.status == TaskStatus(self.status).value)
        if self.name:
            clauses.append(TASKS.c.name == self.name)
        if self.since is not None:
            clauses.append(TASKS.c.created_at >= self.since)
        if self.until is not None:
            clauses.append(TASKS.c.created_at < self.until)
        if self.min_priority is not None:
            clauses.append(TASKS.c.priority >= self.min_priority)
        if self.text:
            pattern = f"%{_escape_like(self.text.lower())}%"
            clauses.append(
                or_(
                    func.lower(TASKS.c.id).like(pattern, escape="\\"),
                    func.lower(TASKS.c.name).like(pattern, escape="\\"),
                    func.lower(TASKS.c.error_message).like(pattern, escape="\\"),
                )
            )
        return clauses


def _escape_like(text: str) -> str:
    # A search for "50%" means the text "50%", not "50 followed by anything".
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class SummaryPage:
    rows: list[Any]  # summaries, newest first
    total: int  # matching tasks; -1 when not counted
    exact: bool  # False when the count stopped at the cap


@dataclass(frozen=True)
class TaskDetail:
    """A task's whole row with what its page shows beside it, read in one transaction."""

    row: Any
    attempts: list[Any]
    retried_as: list[str]
    audit: list[Any]


@dataclass(frozen=True)
class StatusSnapshot:
    """Counts by status and the newest finished tasks: what the metrics are computed from."""

    counts: dict[str, int]
    succeeded: list[Any]
    failed: list[Any]


def list_tasks(
    connection: Connection, task_filter: TaskFilter, *, limit: int, offset: int, with_arguments: bool = False
) -> list[Any]:
    """Summaries (with the arguments if asked), newest first; ties broken by id so pages are stable."""
    columns = [*SUMMARY_COLUMNS, TASKS.c.arguments] if with_arguments else SUMMARY_COLUMNS
    statement = (
        select(*columns)
        .where(*task_filter.clauses())
        .order_by(TASKS.c.created_at.desc(), TASKS.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(connection.execute(statement))


def count_tasks(connection: Connection, task_filter: TaskFilter) -> int:
    statement = select(func.count()).select_from(TASKS).where(*task_filter.clauses())
    return int(connection.execute(statement).scalar_one())


def count_tasks_capped(connection: Connection, task_filter: TaskFilter, *, cap: int) -> tuple[int, bool]:
    """(count, exact): counts at most cap + 1 rows, so a filter matching millions costs a bounded scan."""
    # SELECT 1, not a column: with a status or name filter the count then never leaves the index.
    inner = select(literal(1)).select_from(TASKS).where(*task_filter.clauses()).limit(cap + 1).subquery()
    counted = int(connection.execute(select(func.count()).select_from(inner)).scalar_one())
    return (cap, False) if counted > cap else (counted, True)


def get_task(connection: Connection, task_id: str) -> Any | None:
    return connection.execute(select(TASKS).where(TASKS.c.id == task_id)).first()


def get_summaries(connection: Connection, task_ids: list[str]) -> list[Any]:
    """The summaries of these tasks (those that exist), in no particular order."""
    if not task_ids:
        return []
    return list(connection.execute(select(*SUMMARY_COLUMNS).where(TASKS.c.id.in_(task_ids))))


def summary_page(
    connection: Connection, task_filter: TaskFilter, *, limit: int, offset: int, count: bool, count_cap: int | None
) -> SummaryPage:
    """A page of summaries and, with `count`, how many tasks match (capped when `count_cap` is set)."""
    rows = list_tasks(connection, task_filter, limit=limit, offset=offset)
    if not count:
        return SummaryPage(rows, -1, True)
    if count_cap is None:
        return SummaryPage(rows, count_tasks(connection, task_filter), True)
    total, exact = count_tasks_capped(connection, task_filter, cap=count_cap)
    return SummaryPage(rows, total, exact)


def task_detail(connection: Connection, task_id: str, *, audit_limit: int) -> TaskDetail | None:
    row = get_task(connection, task_id)
    if row is None:
        return None
    return TaskDetail(
        row=row,
        attempts=list_attempts(connection, task_id),
        retried_as=retries_of(connection, task_id),
        audit=list_audit(connection, limit=audit_limit, offset=0, task_id=task_id),
    )


def find_by_idempotency_key(connection: Connection, key: str) -> str | None:
    return connection.execute(select(TASKS.c.id).where(TASKS.c.idempotency_key == key)).scalar_one_or_none()


def list_attempts(connection: Connection, task_id: str) -> list[Any]:
    statement = select(ATTEMPTS).where(ATTEMPTS.c.task_id == task_id).order_by(ATTEMPTS.c.number, ATTEMPTS.c.id)
    return list(connection.execute(statement))


def retries_of(connection: Connection, task_id: str) -> list[str]:
    """Ids of the tasks that retry this one (manual retries), oldest first."""
    statement = select(TASKS.c.id).where(TASKS.c.retry_of == task_id).order_by(TASKS.c.created_at)
    return list(connection.execute(statement).scalars())


def status_counts(connection: Connection) -> dict[str, int]:
    statement = select(TASKS.c.status, func.count()).group_by(TASKS.c.status)
    counts = {status.value: 0 for status in TaskStatus}
    counts.update({row[0]: int(row[1]) for row in connection.execute(statement)})
    return counts


def recent_finished(connection: Connection, status: TaskStatus, *, limit: int) -> list[Any]:
    """The newest `limit` tasks in one final status: the bounded window metrics are computed over.

    One query per status (not `status IN (...)`), so each walks its (status, created_at) index.
    """
    statement = (
        select(TASKS.c.name, TASKS.c.status, TASKS.c.started_at, TASKS.c.finished_at)
        .where(TASKS.c.status == status.value)
        .order_by(TASKS.c.created_at.desc())
        .limit(limit)
    )
    return list(connection.execute(statement))


def status_snapshot(connection: Connection, *, window: int) -> StatusSnapshot:
    return StatusSnapshot(
        counts=status_counts(connection),
        succeeded=recent_finished(connection, TaskStatus.SUCCESS, limit=window),
        failed=recent_finished(connection, TaskStatus.FAILED, limit=window),
    )


def oldest_due_pending(connection: Connection, *, now: datetime) -> datetime | None:
    """Since when the longest-waiting due PENDING task has been due (None when none waits)."""
    due_since = func.coalesce(TASKS.c.next_run_at, TASKS.c.created_at)
    statement = select(func.min(due_since)).where(
        TASKS.c.status == TaskStatus.PENDING.value,
        or_(TASKS.c.next_run_at.is_(None), TASKS.c.next_run_at <= now),
    )
    oldest: datetime | None = connection.execute(statement).scalar()
    return oldest


def retryable_failed_ids(connection: Connection, task_filter: TaskFilter, *, limit: int) -> list[str]:
    """Failed tasks matching the filter that no task retries yet, newest first (bulk retry)."""
    retry = TASKS.alias("retry")
    retried = select(retry.c.id).where(retry.c.retry_of == TASKS.c.id)
    statement = (
        select(TASKS.c.id)
        .where(*task_filter.clauses(), TASKS.c.status == TaskStatus.FAILED.value, ~exists(retried))
        .order_by(TASKS.c.created_at.desc(), TASKS.c.id.desc())
        .limit(limit)
    )
    return list(connection.execute(statement).scalars())


def list_audit(
    connection: Connection, *, limit: int, offset: int, task_id: str | None = None, actor: str | None = None
) -> list[Any]:
    """Admin actions, newest first."""
    statement = select(AUDIT)
    if task_id:
        statement = statement.where(AUDIT.c.task_id == task_id)
    if actor:
        statement = statement.where(AUDIT.c.actor == actor)
    statement = statement.order_by(AUDIT.c.at.desc(), AUDIT.c.id.desc()).limit(limit).offset(offset)
    return list(connection.execute(statement))
