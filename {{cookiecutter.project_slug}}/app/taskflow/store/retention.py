"""Deleting finished tasks past the retention period, a chunk per short transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from ..models import TERMINAL_STATUSES
from .writes import ATTEMPTS, TASKS

_FINISHED = sorted(status.value for status in TERMINAL_STATUSES)


def delete_finished_before(connection: Connection, *, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` of the oldest tasks that finished before `cutoff`, with their
    attempts; returns how many task rows went. Pending and running tasks are never touched.

    A task is created before it finishes, so `created_at < cutoff` holds for every row wanted:
    the scan walks the created_at index from the oldest row and stops after `limit` matches.
    """
    # `status || ''` keeps the status from choosing the index. Given `status IN (...)`, SQLite
    # takes the (status, created_at) index instead, which reads and sorts every finished row
    # before the cutoff for each chunk, and makes the DELETE below look ids up through it.
    finished = (TASKS.c.status + "").in_(_FINISHED)
    ids = (
        connection.execute(
            select(TASKS.c.id)
            .where(TASKS.c.created_at < cutoff, TASKS.c.finished_at < cutoff, finished)
            .order_by(TASKS.c.created_at)
            .limit(limit)
        )
        .scalars()
        .all()
    )
    if not ids:
        return 0
    connection.execute(delete(ATTEMPTS).where(ATTEMPTS.c.task_id.in_(ids)))
    # The status again: on PostgreSQL another transaction may have changed a row since the select.
    return connection.execute(delete(TASKS).where(TASKS.c.id.in_(ids), finished)).rowcount
