"""Rate windows in the task database: one `taskflow_rate_starts` row per start (see rates.py).

Called inside the claim's transaction, after the task's lock (limits.lock_names on PostgreSQL;
SQLite runs one write transaction at a time), so two instances never both see the same room.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from ..models import TaskRateStart
from ..rates import Rate, Taken, Usage

RATE_STARTS = TaskRateStart.__table__  # type: ignore[attr-defined]


def _window(connection: Connection, *, name: str, rate: Rate, now: datetime) -> list[datetime]:
    """Start times of `name` in (now - period, now], oldest first."""
    statement = (
        select(RATE_STARTS.c.started_at)
        .where(RATE_STARTS.c.name == name, RATE_STARTS.c.started_at > now - rate.window)
        .order_by(RATE_STARTS.c.started_at)
    )
    return list(connection.scalars(statement))


class DatabaseRateWindows:
    """The default RateWindows: the task database, shared by every instance that shares it."""

    def take(self, connection: Connection, *, name: str, rate: Rate, wanted: int, now: datetime) -> Taken:
        # Starts that left the window count for nothing: delete them so the table stays the size
        # of the windows (at most `limit` rows per task).
        connection.execute(
            delete(RATE_STARTS).where(RATE_STARTS.c.name == name, RATE_STARTS.c.started_at <= now - rate.window)
        )
        started = _window(connection, name=name, rate=rate, now=now)
        granted = max(0, min(rate.limit - len(started), wanted))
        if granted:
            connection.execute(insert(RATE_STARTS), [{"name": name, "started_at": now}] * granted)
        if granted == wanted:
            return Taken(granted=granted)
        oldest = started[0] if started else now
        return Taken(granted=granted, frees_at=oldest + rate.window)

    def usage(self, connection: Connection, *, name: str, rate: Rate, now: datetime) -> Usage:
        started = _window(connection, name=name, rate=rate, now=now)
        frees_at = started[0] + rate.window if len(started) >= rate.limit else None
        return Usage(started=len(started), frees_at=frees_at)
