"""Lease SQL: renew an instance's leases, take over expired ones, release them at shutdown.

A claim of expired rows is one guarded UPDATE over a locked sub-select: PostgreSQL locks the
picked rows with FOR UPDATE SKIP LOCKED so instances split the work; SQLite ignores that clause
but runs the statement inside BEGIN IMMEDIATE, which already serialises writers. The outer
WHERE repeats the expiry test, so a row renewed in the meantime is never taken.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, case, insert, literal, null, or_, select, text, true, update
from sqlalchemy.engine import Connection

from ..models import UNOWNED_INDEX, UNOWNED_PENDING, TaskStatus, UTCDateTime, utcnow
from ..rates import RateWindows
from .limits import TaskLimits, lock_names, pick_limited
from .writes import ATTEMPTS, CHUNK, TASKS

# The order ownerless rows are claimed in: the unowned index's own (models.py), word for word.
CLAIM_ORDER = "priority DESC, created_at"

ACTIVE = (TaskStatus.PENDING.value, TaskStatus.RUNNING.value)
RECOVERY_LIMIT_ERROR = "RecoveryLimitExceeded"
# Statuses of attempt rows written for attempts cut short (the task's own status is apart).
ATTEMPT_CRASHED = "crashed"  # its instance died or lost its lease while it ran; another took over
ATTEMPT_RELEASED = "released"  # its instance shut down while it ran; the task runs again elsewhere
LOST_ATTEMPT_ERROR = "InstanceLost"
SHUTDOWN_ERROR = "InstanceShutdown"
SHUT_DOWN = "the instance shut down while this attempt ran"


def _expired(now: datetime) -> Any:
    return or_(TASKS.c.lease_expires_at.is_(None), TASKS.c.lease_expires_at < now)


def _not_ours(owner: str) -> Any:
    # Our own rows are never "expired work": we are alive and renew them. Their lease can run out
    # while the database is unreachable or locked; taking them over then would re-run tasks that
    # are still running here (their outcomes then rejected by the fencing).
    return or_(TASKS.c.owner.is_(None), TASKS.c.owner != owner)


def renew(connection: Connection, *, owner: str, until: datetime) -> int:
    """Extend every active lease this instance holds, in one statement."""
    statement = update(TASKS).where(TASKS.c.owner == owner, TASKS.c.status.in_(ACTIVE)).values(lease_expires_at=until)
    return connection.execute(statement).rowcount


def take_over_expired(
    connection: Connection,
    *,
    owner: str,
    now: datetime,
    until: datetime,
    limit: int,
    max_recoveries: int,
    names: Collection[str] | None = None,
    ownerless: bool = False,
) -> list[Any]:
    """Claim other owners' persisted active rows whose lease expired; return them (now PENDING, ours).

    With `ownerless`, they go back to PENDING with no owner instead (tasks with a concurrency
    limit: only the claim of ownerless rows starts them, within their limits).

    Each row that was RUNNING gets an attempt row (status "crashed", with the number, owner and
    start of the attempt that was cut short), in this same transaction. PENDING rows nobody
    owns are not taken here: claim_ownerless claims them once due, in batches sized to the room
    an instance has (a sweep taking them all would leave other workers nothing).

    A row that was RUNNING when its owner died counts one recovery; past `max_recoveries` it is
    quarantined as FAILED instead of being run again (a task that keeps killing its process).
    With `names`, only tasks of those names are taken: during a rolling deploy an instance of the
    old version leaves a new task type to the instances that can run it.
    """
    runnable = TASKS.c.name.in_(list(names)) if names is not None else true()
    # picked: persisted, active, nobody's lease; oldest first so nothing starves. Read first, with
    # the rows locked (PostgreSQL; SKIP LOCKED splits the work between instances), because the
    # attempt a crashed row was running (its number, owner and start) is recorded below, and the
    # UPDATE's RETURNING only gives the new values. The UPDATE names the ids, never the locking
    # sub-select: PostgreSQL re-ran such a sub-select while re-checking rows others had updated.
    picked = connection.execute(
        select(TASKS.c.id, TASKS.c.status, TASKS.c.owner, TASKS.c.attempt, TASKS.c.started_at)
        .where(TASKS.c.persist.is_(True), TASKS.c.status.in_(ACTIVE), _expired(now), _not_ours(owner), runnable)
        .where(or_(TASKS.c.status != TaskStatus.PENDING.value, TASKS.c.owner.is_not(None)))  # not UNOWNED_PENDING
        .order_by(TASKS.c.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not picked:
        return []
    crashed = TASKS.c.status == TaskStatus.RUNNING.value
    over_cap = crashed & (TASKS.c.recoveries + 1 > max_recoveries)
    taken: list[Any] = []
    ids = [row.id for row in picked]
    for start in range(0, len(ids), CHUNK):
        statement = (
            update(TASKS)
            .where(TASKS.c.id.in_(ids[start : start + CHUNK]), TASKS.c.status.in_(ACTIVE))
            .where(_expired(now), _not_ours(owner))
            .values(
                owner=None if ownerless else owner,
                lease_expires_at=None if ownerless else until,
                updated_at=now,
                recoveries=TASKS.c.recoveries + case((crashed, 1), else_=0),
                status=case((over_cap, TaskStatus.FAILED.value), else_=TaskStatus.PENDING.value),
                finished_at=case((over_cap, now), else_=None),
                error_type=case((over_cap, RECOVERY_LIMIT_ERROR), else_=TASKS.c.error_type),
                error_message=case(
                    (over_cap, f"exceeded recovery attempts ({max_recoveries}): the process died while running it"),
                    else_=TASKS.c.error_message,
                ),
            )
            .returning(*TASKS.c)
        )
        taken.extend(connection.execute(statement))
    taken_ids = {row.id for row in taken}
    lost = [row for row in picked if row.id in taken_ids and row.status == TaskStatus.RUNNING.value]
    if lost:
        connection.execute(insert(ATTEMPTS), [_crashed_attempt(row, taken_by=owner, now=now) for row in lost])
    return taken


def _crashed_attempt(row: Any, *, taken_by: str, now: datetime) -> dict[str, Any]:
    """The attempt row of a run its instance never finished: when it started, who ran it, what happened."""
    return {
        "task_id": row.id,
        "number": row.attempt,
        "owner": row.owner,
        "status": ATTEMPT_CRASHED,
        "started_at": row.started_at,
        # When it was found lost: the process may have died any time after its last lease renewal.
        "finished_at": now,
        "duration": None,
        "error_type": LOST_ATTEMPT_ERROR,
        "error_message": (
            f"instance {row.owner or '(none)'} stopped renewing its lease while this attempt ran (killed, "
            f"crashed or cut off from the database); instance {taken_by} took the task over to run it again"
        ),
        "traceback": None,
        "logs": None,
    }


def interrupt_orphans(connection: Connection, *, owner: str, now: datetime) -> int:
    """Other owners' non-persisted rows whose lease expired are INTERRUPTED: they are never re-run."""
    statement = (
        update(TASKS)
        .where(TASKS.c.persist.is_(False), TASKS.c.status.in_(ACTIVE), _expired(now), _not_ours(owner))
        .values(status=TaskStatus.INTERRUPTED.value, finished_at=now, updated_at=now, owner=None)
    )
    return connection.execute(statement).rowcount


def release(connection: Connection, *, owner: str, now: datetime) -> tuple[int, int]:
    """At shutdown: persisted rows go back to PENDING with no owner (a live instance's next tick
    claims them); non-persisted ones are INTERRUPTED. Returns (released, interrupted).

    Each attempt that was running gets its attempt row first (status "released", or
    "interrupted" for a task that is not re-run), in this same transaction.
    """
    _record_shutdown_attempts(connection, owner=owner, now=now)
    released = connection.execute(
        update(TASKS)
        .where(TASKS.c.owner == owner, TASKS.c.status.in_(ACTIVE), TASKS.c.persist.is_(True))
        .values(status=TaskStatus.PENDING.value, owner=None, lease_expires_at=now, updated_at=now)
    ).rowcount
    interrupted = connection.execute(
        update(TASKS)
        .where(TASKS.c.owner == owner, TASKS.c.status.in_(ACTIVE), TASKS.c.persist.is_(False))
        .values(status=TaskStatus.INTERRUPTED.value, finished_at=now, updated_at=now, owner=None)
    ).rowcount
    return released, interrupted


def _record_shutdown_attempts(connection: Connection, *, owner: str, now: datetime) -> int:
    """One attempt row per attempt this owner was running, copied from the task rows in one statement."""
    persisted = TASKS.c.persist.is_(True)
    columns = {
        "task_id": TASKS.c.id,
        "number": TASKS.c.attempt,
        "owner": TASKS.c.owner,
        "status": case((persisted, ATTEMPT_RELEASED), else_=TaskStatus.INTERRUPTED.value),
        "started_at": TASKS.c.started_at,
        "finished_at": literal(now, UTCDateTime()),
        "duration": null(),
        "error_type": literal(SHUTDOWN_ERROR),
        "error_message": case(
            (persisted, literal(f"{SHUT_DOWN}; the task went back to pending to run again")),
            else_=literal(f"{SHUT_DOWN}; the task is not persisted, so it is not run again"),
        ),
    }
    statement = insert(ATTEMPTS).from_select(
        list(columns),
        select(*columns.values()).where(TASKS.c.owner == owner, TASKS.c.status == TaskStatus.RUNNING.value),
    )
    return connection.execute(statement).rowcount


def released_ids(
    connection: Connection,
    *,
    limit: int,
    names: Collection[str] | None = None,
    due: datetime | None = None,
    lock: bool = False,
    exclude: Collection[str] | None = None,
) -> list[str]:
    """Persisted rows waiting with no owner (of `names`; with `due`, only those due by then),
    highest priority first and oldest first within one, read from their small index in that
    order. With `lock` (PostgreSQL), the rows are locked and rows another transaction locked are
    skipped: instances claiming at once split them."""
    if connection.dialect.name == "sqlite":
        # SQLite's planner prefers the status index, which holds every pending row (the whole
        # backlog), to the partial one: name it. (It has no row locks: BEGIN IMMEDIATE serialises.)
        where = "" if names is None else " AND name IN :names"
        if due is not None:
            where += " AND (next_run_at IS NULL OR next_run_at <= :due)"
        if exclude:
            where += " AND name NOT IN :exclude"
        statement: Any = text(
            f"SELECT id FROM taskflow_tasks INDEXED BY {UNOWNED_INDEX} "
            f"WHERE {UNOWNED_PENDING} AND persist = 1{where} ORDER BY {CLAIM_ORDER} LIMIT :limit"
        )
        values: dict[str, Any] = {"limit": limit}
        if names is not None:
            statement = statement.bindparams(bindparam("names", expanding=True))
            values["names"] = list(names)
        if due is not None:
            statement = statement.bindparams(bindparam("due", type_=UTCDateTime()))
            values["due"] = due
        if exclude:
            statement = statement.bindparams(bindparam("exclude", expanding=True))
            values["exclude"] = list(exclude)
        return [row.id for row in connection.execute(statement, values)]
    query = ownerless_query(limit=limit, names=names, due=due, lock=lock, exclude=exclude)
    return [row.id for row in connection.execute(query)]


def ownerless_query(
    *,
    limit: int,
    names: Collection[str] | None = None,
    due: datetime | None = None,
    lock: bool = False,
    exclude: Collection[str] | None = None,
) -> Select[Any]:
    """The SELECT of released_ids on PostgreSQL (the claim's one read of a batch), for EXPLAIN too."""
    runnable = TASKS.c.name.in_(list(names)) if names is not None else true()
    if exclude:
        runnable = runnable & TASKS.c.name.not_in(list(exclude))
    is_due = true() if due is None else or_(TASKS.c.next_run_at.is_(None), TASKS.c.next_run_at <= due)
    query = (
        select(TASKS.c.id)
        .where(text(UNOWNED_PENDING), TASKS.c.persist.is_(True), runnable, is_due)
        .order_by(text(CLAIM_ORDER))
        .limit(limit)
    )
    return query.with_for_update(skip_locked=True) if lock else query


# What a job needs of a row claim_ownerless took (not the result, logs or error of earlier attempts).
CLAIMED_COLUMNS = (
    TASKS.c.id,
    TASKS.c.name,
    TASKS.c.arguments,
    TASKS.c.attempt,
    TASKS.c.retries_used,
    TASKS.c.created_at,
    TASKS.c.priority,
)


@dataclass(frozen=True)
class Claim:
    """The rows a claim took (CLAIMED_COLUMNS, in claim order), and when a task held back by its
    rate limit has room again (None: none was held back by its rate)."""

    rows: list[Any]
    retry_at: datetime | None = None


def claim_ownerless(
    connection: Connection,
    *,
    owner: str,
    until: datetime,
    limit: int,
    names: Collection[str] | None = None,
    limits: Mapping[str, TaskLimits] | None = None,
    rates: RateWindows,
) -> Claim:
    """Claim up to `limit` due rows nobody owns straight into RUNNING under `owner`; return them
    (CLAIMED_COLUMNS), highest priority first and oldest first within one.

    The batch a worker takes: the ids are read from the small unowned index with their rows
    locked (PostgreSQL: FOR UPDATE SKIP LOCKED, so instances claiming at once take different
    rows), then moved in one UPDATE per CHUNK ids. The UPDATE repeats the unowned test, so a
    row taken meanwhile (SQLite has no row locks, but serialises writers) is never taken twice.

    With `limits` (the registered tasks that declared a concurrency or rate limit), rows of those
    names are picked first, within their limits (limits.py; rate windows in `rates`), and the
    batch's other rows come from the other names; without, the claim is as it always was.
    """
    ids: list[str] = []
    exclude: list[str] | None = None
    retry_at: datetime | None = None
    if limits:
        lock_names(connection, limits)
    now = utcnow()  # after the locks: the start the rows are stamped with is when they start
    if limits:
        picked = pick_limited(
            connection, owner=owner, limits=limits, room=limit, now=now, unowned=released_ids, rates=rates
        )
        ids, retry_at = picked.ids, picked.retry_at
        if names is None:
            exclude = list(limits)
        else:
            names = [name for name in names if name not in limits]
    if len(ids) < limit and (names is None or names):
        ids += released_ids(connection, limit=limit - len(ids), names=names, due=now, lock=True, exclude=exclude)
    claimed: list[Any] = []
    for start in range(0, len(ids), CHUNK):
        statement = (
            update(TASKS)
            .where(TASKS.c.id.in_(ids[start : start + CHUNK]), text(UNOWNED_PENDING))
            .values(
                status=TaskStatus.RUNNING.value,
                owner=owner,
                lease_expires_at=until,
                attempt=TASKS.c.attempt + 1,
                started_at=now,
                updated_at=now,
                next_run_at=None,
            )
            .returning(*CLAIMED_COLUMNS)
        )
        claimed.extend(connection.execute(statement))
    # In claim order (RETURNING follows no order): the runner starts equal priorities in this order.
    position = {task_id: n for n, task_id in enumerate(ids)}
    if limits:  # two reads (limited names, the others): merged into claim order
        claimed.sort(key=lambda row: (-row.priority, row.created_at, position[row.id]))
    else:
        claimed.sort(key=lambda row: position[row.id])
    return Claim(rows=claimed, retry_at=retry_at)


def expire_owners(connection: Connection, *, owners: list[str], now: datetime) -> int:
    """End the leases of owners known to be dead, so their rows can be taken over now."""
    if not owners:
        return 0
    statement = update(TASKS).where(TASKS.c.owner.in_(owners), TASKS.c.status.in_(ACTIVE)).values(lease_expires_at=now)
    return connection.execute(statement).rowcount


def live_owners(connection: Connection, *, now: datetime) -> list[str]:
    """Owners holding unexpired leases on active rows."""
    statement = (
        select(TASKS.c.owner)
        .where(TASKS.c.status.in_(ACTIVE), TASKS.c.owner.is_not(None), TASKS.c.lease_expires_at >= now)
        .group_by(TASKS.c.owner)
    )
    return [row.owner for row in connection.execute(statement)]


def owned_since(connection: Connection, *, owner: str, before: datetime) -> list[str]:
    """Ids of this owner's active rows that have not changed since `before`."""
    statement = select(TASKS.c.id).where(
        TASKS.c.owner == owner, TASKS.c.status.in_(ACTIVE), TASKS.c.updated_at < before
    )
    return [row.id for row in connection.execute(statement)]


def disown(connection: Connection, *, owner: str, task_ids: list[str], before: datetime) -> int:
    """Give up rows this owner holds but no longer runs, so recovery takes them like a dead owner's.

    Guarded on the owner and on `updated_at`: a row that moved on meanwhile (claimed, finished)
    is left alone. Persisted rows are then re-run; the others become INTERRUPTED.
    """
    disowned = 0
    for start in range(0, len(task_ids), CHUNK):
        statement = (
            update(TASKS)
            .where(
                TASKS.c.id.in_(task_ids[start : start + CHUNK]),
                TASKS.c.owner == owner,
                TASKS.c.status.in_(ACTIVE),
                TASKS.c.updated_at < before,
            )
            .values(owner=None, lease_expires_at=None)
        )
        disowned += connection.execute(statement).rowcount
    return disowned


def cancel_requests(connection: Connection, *, owner: str) -> list[str]:
    """Ids of this owner's active rows that someone asked to cancel."""
    statement = select(TASKS.c.id).where(
        TASKS.c.owner == owner, TASKS.c.status.in_(ACTIVE), TASKS.c.cancel_requested.is_(True)
    )
    return [row.id for row in connection.execute(statement)]
