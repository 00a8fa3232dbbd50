"""What the admin's bulk actions read: the ids a filter selects and how many finished tasks a
purge would take. Chosen finished tasks are deleted by retention.delete_finished_ids, the one
delete of task rows."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import func, literal, select
from sqlalchemy.engine import Connection

from ..models import TaskStatus
from .queries import TaskFilter
from .retention import finished_before
from .writes import TASKS


def ids_matching(
    connection: Connection, task_filter: TaskFilter, *, statuses: Collection[TaskStatus] | None, limit: int
) -> list[str]:
    """Up to `limit` ids of tasks matching the filter (and in one of `statuses`), newest first."""
    clauses = task_filter.clauses()
    if statuses is not None:
        clauses.append(TASKS.c.status.in_(sorted(status.value for status in statuses)))
    statement = select(TASKS.c.id).where(*clauses).order_by(TASKS.c.created_at.desc(), TASKS.c.id.desc()).limit(limit)
    return list(connection.execute(statement).scalars())


def count_finished_before(connection: Connection, *, cutoff: datetime, cap: int | None) -> tuple[int, bool]:
    """(count, exact) of the tasks a purge of `cutoff` deletes; at most cap + 1 rows are counted."""
    inner = select(literal(1)).select_from(TASKS).where(*finished_before(cutoff))
    if cap is not None:
        inner = inner.limit(cap + 1)
    counted = int(connection.execute(select(func.count()).select_from(inner.subquery())).scalar_one())
    return (cap, False) if cap is not None and counted > cap else (counted, True)
