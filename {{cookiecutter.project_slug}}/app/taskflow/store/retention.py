"""Deleting finished tasks: past the retention period or a purge's age, a chunk per short
transaction, or chosen ones (the admin's bulk delete)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from ..models import TERMINAL_STATUSES
from .writes import ATTEMPTS, TASKS

_FINISHED = sorted(status.value for status in TERMINAL_STATUSES)


def _finished() -> Any:
    # `status || ''` keeps the status from choosing the index. Given `status IN (...)`, SQLite
    # takes the (status, created_at) index instead, which reads and sorts every finished row
    # before the cutoff for each chunk, and makes the DELETE below look ids up through it.
    return (TASKS.c.status + "").in_(_FINISHED)


def finished_before(cutoff: datetime) -> list[Any]:
    """The WHERE clauses of "finished before `cutoff`": what a purge deletes."""
    return [TASKS.c.created_at < cutoff, TASKS.c.finished_at < cutoff, _finished()]


def delete_finished_before(connection: Connection, *, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` of the oldest tasks that finished before `cutoff`, with their
    attempts; returns how many task rows went. Pending and running tasks are never touched.

    A task is created before it finishes, so `created_at < cutoff` holds for every row wanted:
    the scan walks the created_at index from the oldest row and stops after `limit` matches.
    """
    ids = (
        connection.execute(select(TASKS.c.id).where(*finished_before(cutoff)).order_by(TASKS.c.created_at).limit(limit))
        .scalars()
        .all()
    )
    return delete_finished_ids(connection, list(ids))


def delete_finished_ids(connection: Connection, ids: list[str]) -> int:
    """Delete these tasks, with their attempts, if they are finished; returns how many task rows
    went. The one way a task row is deleted: retention, purges and the admin's bulk delete."""
    if not ids:
        return 0
    finished = _finished()
    # Attempts only of rows that are finished: an id of a pending or running task keeps its history.
    finished_ids = select(TASKS.c.id).where(TASKS.c.id.in_(ids), finished)
    connection.execute(delete(ATTEMPTS).where(ATTEMPTS.c.task_id.in_(finished_ids)))
    # The status again: on PostgreSQL another transaction may have changed a row since the select.
    return int(connection.execute(delete(TASKS).where(TASKS.c.id.in_(ids), finished)).rowcount)
