"""Read queries for the admin and the JSON API: paginated, filtered, index-friendly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Connection

from ..models import TaskStatus
from .writes import ATTEMPTS, TASKS


@dataclass(frozen=True, kw_only=True)
class TaskFilter:
    status: TaskStatus | None = None
    name: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    # Case-insensitive text search in the id, the name and the error message.
    text: str | None = None

    def clauses(self) -> list[Any]:
        clauses: list[Any] = []
        if self.status is not None:
            clauses.append(TASKS.c.status == self.status.value)
        if self.name:
            clauses.append(TASKS.c.name == self.name)
        if self.since is not None:
            clauses.append(TASKS.c.created_at >= self.since)
        if self.until is not None:
            clauses.append(TASKS.c.created_at < self.until)
        if self.text:
            pattern = f"%{self.text.lower()}%"
            clauses.append(
                or_(
                    func.lower(TASKS.c.id).like(pattern),
                    func.lower(TASKS.c.name).like(pattern),
                    func.lower(TASKS.c.error_message).like(pattern),
                )
            )
        return clauses


def list_tasks(connection: Connection, task_filter: TaskFilter, *, limit: int, offset: int) -> list[Any]:
    """Newest first; ties broken by id so pages are stable."""
    statement = (
        select(TASKS)
        .where(*task_filter.clauses())
        .order_by(TASKS.c.created_at.desc(), TASKS.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(connection.execute(statement))


def count_tasks(connection: Connection, task_filter: TaskFilter) -> int:
    statement = select(func.count()).select_from(TASKS).where(*task_filter.clauses())
    return int(connection.execute(statement).scalar_one())


def get_task(connection: Connection, task_id: str) -> Any | None:
    return connection.execute(select(TASKS).where(TASKS.c.id == task_id)).first()


def get_tasks(connection: Connection, task_ids: list[str]) -> list[Any]:
    if not task_ids:
        return []
    return list(connection.execute(select(TASKS).where(TASKS.c.id.in_(task_ids))))


def find_by_idempotency_key(connection: Connection, key: str) -> str | None:
    return connection.execute(select(TASKS.c.id).where(TASKS.c.idempotency_key == key)).scalar_one_or_none()


def list_attempts(connection: Connection, task_id: str) -> list[Any]:
    statement = select(ATTEMPTS).where(ATTEMPTS.c.task_id == task_id).order_by(ATTEMPTS.c.number, ATTEMPTS.c.id)
    return list(connection.execute(statement))


def status_counts(connection: Connection) -> dict[str, int]:
    statement = select(TASKS.c.status, func.count()).group_by(TASKS.c.status)
    counts = {status.value: 0 for status in TaskStatus}
    counts.update({row[0]: int(row[1]) for row in connection.execute(statement)})
    return counts


def average_duration(connection: Connection) -> float | None:
    statement = select(func.avg(ATTEMPTS.c.duration)).where(ATTEMPTS.c.status == TaskStatus.SUCCESS.value)
    value = connection.execute(statement).scalar_one()
    return None if value is None else float(value)
