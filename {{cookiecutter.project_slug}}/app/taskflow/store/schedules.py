"""Schedule SQL: register a schedule's definition, find due ones, fire a due time once, pause.

Firing is one transaction: a compare-and-set moves the schedule's `next_run_at` on from the due
time, and only the caller whose UPDATE changed the row inserts the task row. Two instances that
find the same due time both try; one UPDATE matches, the other changes nothing and inserts
nothing. A process killed before the commit leaves no trace, so the next instance fires it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, outerjoin, select, update
from sqlalchemy.engine import Connection

from ..models import TaskSchedule
from ..storable import storable_values
from .writes import TASKS

SCHEDULES = TaskSchedule.__table__  # type: ignore[attr-defined]


def get_schedule(connection: Connection, name: str) -> Any | None:
    return connection.execute(select(SCHEDULES).where(SCHEDULES.c.name == name)).first()


def register(
    connection: Connection,
    *,
    name: str,
    kind: str,
    expression: str,
    timezone: str,
    first_run_at: datetime,
    now: datetime,
) -> Any:
    """Insert the schedule, or bring its stored definition up to date; returns the stored row.

    An unchanged definition keeps its `next_run_at` (a restart neither skips nor repeats a due
    time); a changed one starts again from `first_run_at`. Pause state is kept either way.
    """
    row = get_schedule(connection, name)
    definition = {"kind": kind, "expression": expression, "timezone": timezone}
    if row is None:
        values = {**definition, "name": name, "next_run_at": first_run_at, "paused": False, "updated_at": now}
        connection.execute(insert(SCHEDULES).values(**values))
    elif (row.kind, row.expression, row.timezone) != (kind, expression, timezone):
        connection.execute(
            update(SCHEDULES)
            .where(SCHEDULES.c.name == name)
            .values(**definition, next_run_at=first_run_at, updated_at=now)
        )
    return get_schedule(connection, name)


def list_schedules(connection: Connection) -> list[Any]:
    """Every schedule by name, with the status of the task its last due time made (or None)."""
    joined = outerjoin(SCHEDULES, TASKS, TASKS.c.id == SCHEDULES.c.last_task_id)
    statement = select(SCHEDULES, TASKS.c.status.label("last_status")).select_from(joined).order_by(SCHEDULES.c.name)
    return list(connection.execute(statement))


def fire(
    connection: Connection,
    *,
    name: str,
    due_at: datetime,
    next_run_at: datetime,
    run_at: datetime | None,
    row: dict[str, Any] | None,
    now: datetime,
) -> bool:
    """Move the schedule from `due_at` to `next_run_at` and, if `row` is given, insert it as the
    run of `run_at`. True if this call moved it (and so owns the run); False if another did first,
    or the schedule was paused or changed meanwhile."""
    values: dict[str, Any] = {"next_run_at": next_run_at, "updated_at": now}
    if row is not None:
        values.update(last_run_at=run_at, last_task_id=row["id"])
    moved = connection.execute(
        update(SCHEDULES)
        .where(SCHEDULES.c.name == name, SCHEDULES.c.next_run_at == due_at, SCHEDULES.c.paused.is_(False))
        .values(**values)
    ).rowcount
    if moved != 1:
        return False
    # The id is made from the schedule and the due time: a due time fired before (a definition
    # changed back, a clock set back) finds its row there and does not run twice.
    if row is not None and connection.execute(select(TASKS.c.id).where(TASKS.c.id == row["id"])).first() is None:
        connection.execute(insert(TASKS).values(**storable_values(row)))
    return True


def set_paused(connection: Connection, *, name: str, paused: bool, next_run_at: datetime | None, now: datetime) -> bool:
    """Pause or resume; a resume may also move the next due time. False if no such schedule."""
    values: dict[str, Any] = {"paused": paused, "updated_at": now}
    if next_run_at is not None:
        values["next_run_at"] = next_run_at
    statement = update(SCHEDULES).where(SCHEDULES.c.name == name).values(**values)
    return bool(connection.execute(statement).rowcount == 1)
