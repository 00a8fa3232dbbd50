"""Guarded writes of the task lifecycle, applied in batches (one transaction per flush).

Every write of a running attempt names the row, the owner and the attempt number it expects
(fencing): a stale owner whose lease was taken over changes nothing, and is told so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy.engine import Connection

from ..models import TaskAttempt, TaskRecord, TaskStatus

TASKS = TaskRecord.__table__  # type: ignore[attr-defined]
ATTEMPTS = TaskAttempt.__table__  # type: ignore[attr-defined]
CHUNK = 500  # ids per statement: well under SQLite's bind-parameter limit

# Columns a finished attempt sets; every Finish carries all of them so one executemany fits all.
FINISH_COLUMNS = (
    "status",
    "finished_at",
    "next_run_at",
    "error_type",
    "error_message",
    "traceback",
    "result",
    "progress_done",
    "progress_total",
    "progress_message",
)
PROGRESS_COLUMNS = ("progress_done", "progress_total", "progress_message")


@dataclass(slots=True)
class Finish:
    """The outcome of attempt `attempt` of a task: a final state, or PENDING again for a retry."""

    task_id: str
    attempt: int
    values: dict[str, Any]
    attempt_row: dict[str, Any]


@dataclass(slots=True)
class Progress:
    task_id: str
    attempt: int
    values: dict[str, Any]


@dataclass
class Batch:
    inserts: list[dict[str, Any]] = field(default_factory=list)
    progress: list[Progress] = field(default_factory=list)
    finishes: list[Finish] = field(default_factory=list)
    claims: list[str] = field(default_factory=list)
    # Attempt rows of tasks whose whole life fitted in one batch (merged into their insert).
    attempt_rows: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.inserts or self.progress or self.finishes or self.claims or self.attempt_rows)

    def __len__(self) -> int:
        return len(self.inserts) + len(self.progress) + len(self.finishes) + len(self.claims) + len(self.attempt_rows)


@dataclass
class BatchResult:
    # task id -> attempt number now running, for the claims that won.
    claimed: dict[str, int] = field(default_factory=dict)
    # Finishes whose row had moved on (owner or attempt changed): the outcome was not recorded.
    rejected: list[str] = field(default_factory=list)


def apply_batch(connection: Connection, batch: Batch, *, owner: str, now: datetime) -> BatchResult:
    """Apply a batch in order: inserts, progress, finishes, then claims (a retry's claim follows its finish)."""
    result = BatchResult()
    if batch.inserts:
        connection.execute(insert(TASKS), batch.inserts)
    if batch.attempt_rows:
        connection.execute(insert(ATTEMPTS), batch.attempt_rows)
    if batch.progress:
        _write_progress(connection, batch.progress, owner=owner, now=now)
    if batch.finishes:
        result.rejected = _write_finishes(connection, batch.finishes, owner=owner, now=now)
    if batch.claims:
        result.claimed = claim(connection, batch.claims, owner=owner, now=now)
    return result


def _guard() -> Any:
    return (
        (TASKS.c.id == bindparam("b_id"))
        & (TASKS.c.owner == bindparam("b_owner"))
        & (TASKS.c.attempt == bindparam("b_attempt"))
        & (TASKS.c.status == TaskStatus.RUNNING.value)
    )


def _write_progress(connection: Connection, items: list[Progress], *, owner: str, now: datetime) -> None:
    statement = (
        update(TASKS)
        .where(_guard())
        .values({**{column: bindparam(f"v_{column}") for column in PROGRESS_COLUMNS}, "updated_at": bindparam("v_now")})
    )
    params = [
        {"b_id": p.task_id, "b_owner": owner, "b_attempt": p.attempt, "v_now": now}
        | {f"v_{column}": p.values.get(column) for column in PROGRESS_COLUMNS}
        for p in items
    ]
    connection.execute(statement, params)


def _write_finishes(connection: Connection, finishes: list[Finish], *, owner: str, now: datetime) -> list[str]:
    statement = (
        update(TASKS)
        .where(_guard())
        .values({**{column: bindparam(f"v_{column}") for column in FINISH_COLUMNS}, "updated_at": bindparam("v_now")})
    )

    def params(finish: Finish) -> dict[str, Any]:
        return {"b_id": finish.task_id, "b_owner": owner, "b_attempt": finish.attempt, "v_now": now} | {
            f"v_{column}": finish.values.get(column) for column in FINISH_COLUMNS
        }

    rows = connection.execute(statement, [params(f) for f in finishes]).rowcount
    if rows == len(finishes):
        accepted = finishes
    else:
        # Some rows moved on (taken over after a lost lease). The fast path cannot say which, so
        # re-apply one by one: an applied update is idempotent, a fenced one matches nothing again.
        accepted = [
            f
            for f in finishes
            if connection.execute(statement, params(f)).rowcount == 1 or _already(connection, f, owner)
        ]
    attempt_rows = [f.attempt_row for f in accepted]
    if attempt_rows:
        connection.execute(insert(ATTEMPTS), attempt_rows)
    accepted_ids = {f.task_id for f in accepted}
    return [f.task_id for f in finishes if f.task_id not in accepted_ids]


def _already(connection: Connection, finish: Finish, owner: str) -> bool:
    """True when the row already holds this finish (applied by the fast path in this transaction)."""
    row = connection.execute(
        TASKS.select()
        .where(TASKS.c.id == finish.task_id)
        .with_only_columns(TASKS.c.owner, TASKS.c.attempt, TASKS.c.status)
    ).first()
    return (
        row is not None
        and row.owner == owner
        and row.attempt == finish.attempt
        and row.status == finish.values["status"]
    )


def claim(connection: Connection, task_ids: list[str], *, owner: str, now: datetime) -> dict[str, int]:
    """PENDING -> RUNNING for the rows this owner holds; the only way into RUNNING."""
    claimed: dict[str, int] = {}
    for start in range(0, len(task_ids), CHUNK):
        chunk = task_ids[start : start + CHUNK]
        statement = (
            update(TASKS)
            .where(
                TASKS.c.id.in_(chunk),
                TASKS.c.status == TaskStatus.PENDING.value,
                TASKS.c.owner == owner,
                TASKS.c.cancel_requested.is_(False),
            )
            .values(
                status=TaskStatus.RUNNING.value,
                attempt=TASKS.c.attempt + 1,
                started_at=now,
                updated_at=now,
                next_run_at=None,
            )
            .returning(TASKS.c.id, TASKS.c.attempt)
        )
        claimed.update({row.id: row.attempt for row in connection.execute(statement)})
    return claimed
