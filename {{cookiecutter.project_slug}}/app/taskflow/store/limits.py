"""Limit SQL: the claim of ownerless rows of tasks declared with a concurrency or rate limit.

A task with `max_concurrent`, `max_concurrent_per_key` or `rate_limit` is only ever started by
the claim of ownerless rows (manager.enqueue commits it ownerless), so this claim is the one
place its limits are enforced. In the claim's transaction:

1. PostgreSQL: `pg_advisory_xact_lock` on each limited name, in sorted order, before anything
   is read, so two instances claiming the same name take turns (each then counts the other's
   committed claim). Row locks cannot do this: a limit is about rows that are *not* picked (the
   running ones, the recent starts). SQLite already runs every write transaction alone (BEGIN
   IMMEDIATE). The claim reads the clock only after these locks: a start is stamped with the
   time it really happened, however long the lock took.
Then per limited name:
2. Count its RUNNING rows with a live lease, per concurrency key. Running rows are few (at most
   the workers of every instance); the status index finds them. A crashed holder's row stops
   counting when its lease expires: its slot frees with its lease.
3. Read at most the free slots of its due pending rows, in claim order, at most
   `max_concurrent_per_key` less the running ones of each key.
4. With a rate limit, ask its window (rates.py) for that many starts: only the granted ones are
   taken, and the window says when it has room again (the claim loop sleeps until then).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import func, literal, select, text, update
from sqlalchemy.engine import Connection

from ..models import UNOWNED_PENDING, TaskStatus
from ..rates import Rate, RateWindows
from .writes import TASKS

# The advisory lock key of a limited name; the prefix keeps it apart from an application's own locks.
LOCK_PREFIX = "taskflow:"


class UnownedIds(Protocol):
    def __call__(
        self, connection: Connection, *, limit: int, names: Collection[str] | None, due: datetime | None
    ) -> list[str]: ...


@dataclass(frozen=True)
class TaskLimits:
    """The limits one registered task declared (None: no limit of that kind)."""

    max_concurrent: int | None = None
    max_per_key: int | None = None
    rate: Rate | None = None


@dataclass(frozen=True)
class Picked:
    """The rows of limited tasks a claim may start, and the earliest time a task whose rate
    window held rows back has room again (None: none was held back by its rate)."""

    ids: list[str]
    retry_at: datetime | None = None


def lock_names(connection: Connection, names: Collection[str]) -> None:
    """Serialise limited claims of `names` across instances until this transaction ends
    (PostgreSQL). In sorted order, so two instances never wait on each other's locks."""
    if connection.dialect.name == "postgresql":
        for name in sorted(names):
            connection.execute(select(func.pg_advisory_xact_lock(func.hashtext(LOCK_PREFIX + name))))


def running_query(*, name: str, now: datetime) -> Any:
    """RUNNING rows of `name` with a live lease, counted per concurrency key (also for EXPLAIN)."""
    return (
        select(TASKS.c.concurrency_key, func.count().label("running"))
        .where(TASKS.c.status == TaskStatus.RUNNING.value, TASKS.c.name == name, TASKS.c.lease_expires_at >= now)
        .group_by(TASKS.c.concurrency_key)
    )


def running_counts(connection: Connection, *, name: str, now: datetime) -> dict[str | None, int]:
    return {row.concurrency_key: row.running for row in connection.execute(running_query(name=name, now=now))}


def per_key_query(*, name: str, now: datetime, limit: int, per_key: int) -> Any:
    """Due ownerless rows of `name` in claim order, each with its place among the pending rows of its
    key: only rows within the first `per_key` of their key, or with no key."""
    due = (TASKS.c.next_run_at.is_(None)) | (TASKS.c.next_run_at <= now)
    where = (text(UNOWNED_PENDING), TASKS.c.persist.is_(True), TASKS.c.name == name, due)
    place = func.row_number().over(
        partition_by=TASKS.c.concurrency_key, order_by=(TASKS.c.priority.desc(), TASKS.c.created_at)
    )
    inner = (
        select(TASKS.c.id, TASKS.c.concurrency_key, TASKS.c.priority, TASKS.c.created_at, place.label("place"))
        .where(*where)
        .subquery()
    )
    return (
        select(inner.c.id, inner.c.concurrency_key, inner.c.place)
        .where(inner.c.concurrency_key.is_(None) | (inner.c.place <= per_key))
        .order_by(inner.c.priority.desc(), inner.c.created_at)
        .limit(limit)
    )


def limited_ids(
    connection: Connection,
    *,
    name: str,
    limit: TaskLimits,
    room: int,
    now: datetime,
    unowned: UnownedIds,
) -> list[str]:
    """Ids of the pending rows of `name` that may start now (at most `room`) within its
    concurrency limits. `unowned` reads due ownerless rows of given names in claim order
    (leases.released_ids). The caller holds the name's lock (lock_names)."""
    if limit.max_concurrent is None and limit.max_per_key is None:
        return unowned(connection, limit=room, names=[name], due=now)
    running = running_counts(connection, name=name, now=now)
    free = room
    if limit.max_concurrent is not None:
        free = min(free, limit.max_concurrent - sum(running.values()))
    if free <= 0:
        return []
    if limit.max_per_key is None:  # the claim's own read of the unowned index, for this name
        return unowned(connection, limit=free, names=[name], due=now)
    # A row is only refused for its key's running rows, so reading `free` more than the running
    # rows always finds `free` acceptable ones when they exist.
    rows = connection.execute(
        per_key_query(name=name, now=now, limit=free + sum(running.values()), per_key=limit.max_per_key)
    ).all()
    picked: list[str] = []
    for row in rows:
        if len(picked) >= free:
            break
        key = row.concurrency_key
        if key is None or row.place + running.get(key, 0) <= limit.max_per_key:
            picked.append(row.id)
    return picked


def give_up_retries(connection: Connection, *, owner: str, names: Collection[str]) -> int:
    """This owner's PENDING rows of limited tasks lose their owner: retries after a failed attempt,
    which the runner leaves to this claim so they wait for a slot like any other row."""
    statement = (
        update(TASKS)
        .where(TASKS.c.status == TaskStatus.PENDING.value, TASKS.c.owner == owner, TASKS.c.name.in_(list(names)))
        .values(owner=None, lease_expires_at=None)
    )
    return connection.execute(statement).rowcount


def pick_limited(
    connection: Connection,
    *,
    owner: str,
    limits: Mapping[str, TaskLimits],
    room: int,
    now: datetime,
    unowned: UnownedIds,
    rates: RateWindows,
) -> Picked:
    """The rows of every limited name that may start now, at most `room` in all; rate windows in
    `rates`. The caller holds the names' locks (lock_names)."""
    give_up_retries(connection, owner=owner, names=list(limits))
    picked: list[str] = []
    retry_at: datetime | None = None
    for name in sorted(limits):
        if len(picked) >= room:
            break
        limit = limits[name]
        ids = limited_ids(connection, name=name, limit=limit, room=room - len(picked), now=now, unowned=unowned)
        if limit.rate is not None and ids:
            taken = rates.take(connection, name=name, rate=limit.rate, wanted=len(ids), now=now)
            ids = ids[: taken.granted]
            if taken.frees_at is not None:
                retry_at = taken.frees_at if retry_at is None else min(retry_at, taken.frees_at)
        picked.extend(ids)
    return Picked(ids=picked, retry_at=retry_at)


def running_of(connection: Connection, *, name: str, key: str | None, now: datetime) -> tuple[int, int]:
    """RUNNING rows with a live lease of `name`, and of those, with concurrency key `key`."""
    of_key = func.count().filter(TASKS.c.concurrency_key == key) if key is not None else literal(0)
    statement = select(func.count(), of_key).where(
        TASKS.c.status == TaskStatus.RUNNING.value, TASKS.c.name == name, TASKS.c.lease_expires_at >= now
    )
    row = connection.execute(statement).one()
    return int(row[0]), int(row[1])
