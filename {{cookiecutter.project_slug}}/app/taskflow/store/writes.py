"""Guarded writes of the task lifecycle, applied in batches (one transaction per flush).

Every write of a running attempt names the row, the owner and the attempt number it expects
(fencing): a stale owner whose lease was taken over changes nothing, and is told so.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, literal_column, select, update
from sqlalchemy.engine import Connection, Dialect

from ..models import TaskAttempt, TaskIntake, TaskRecord, TaskStatus, UTCDateTime
from ..storable import cleaner_for
from .hot import HotStatement, RowsInsert

TASKS = TaskRecord.__table__  # type: ignore[attr-defined]
INTAKE = TaskIntake.__table__  # type: ignore[attr-defined]
ATTEMPTS = TaskAttempt.__table__  # type: ignore[attr-defined]
CHUNK = 500  # ids per statement: well under SQLite's bind-parameter limit
_RUNNING = TaskStatus.RUNNING.value

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
    "retries_used",
)
PROGRESS_COLUMNS = ("progress_done", "progress_total", "progress_message")


@dataclass(slots=True)
class Finish:
    """The outcome of attempt `attempt` of a task: a final state, or PENDING again for a retry."""

    task_id: str
    attempt: int
    values: dict[str, Any]
    # None for a first attempt that succeeded with nothing to show: the task row says it all.
    attempt_row: dict[str, Any] | None


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


class Statements:
    """The lifecycle statements every task goes through, compiled once for one dialect."""

    def __init__(self, dialect: Dialect, encode_time: Callable[[datetime], Any]) -> None:
        self.encode_time = encode_time
        task_columns: dict[str, Any] = {column.name: bindparam(column.name) for column in TASKS.c}
        attempt_columns: dict[str, Any] = {
            column.name: bindparam(column.name) for column in ATTEMPTS.c if column.name != "id"
        }
        self.insert_task = compile_hot(insert(TASKS).values(task_columns), dialect)
        self.insert_attempt = compile_hot(insert(ATTEMPTS).values(attempt_columns), dialect)
        self.finish = compile_hot(_guarded_update(FINISH_COLUMNS), dialect)
        self.progress = compile_hot(_guarded_update(PROGRESS_COLUMNS), dialect)
        # Claims name many ids in one statement: a JSON array on SQLite, an array on PostgreSQL.
        self._ids_as_json = dialect.name == "sqlite"
        self.claim = HotStatement.compile(_claim(self._ids_as_json), dialect, time_binds=_TIME_BINDS)
        # SQLite: new task rows go in multi-row statements (see RowsInsert). PostgreSQL's driver
        # pipelines an executemany already.
        self._rows_insert = (
            RowsInsert(self.insert_task, max_binds=_sqlite_max_binds()) if dialect.name == "sqlite" else None
        )

    def new_rows(self, rows: list[dict[str, Any]]) -> list[Any]:
        """New task rows (every column present) in the driver's form, for insert_new_rows.

        Made before the write transaction begins: while the transaction runs, every other write
        of this process (a persisted enqueue on the event loop) waits for it.
        """
        encode_time = self.encode_time
        statement = self.insert_task
        return [statement.params(row, encode_time) for row in rows]

    def insert_new_rows(self, connection: Connection, params: list[Any]) -> int:
        """Insert rows made by new_rows(); returns how many went in."""
        if self._rows_insert is not None and len(params) > 1:
            return self._rows_insert.execute_params(connection, params)
        return self.insert_task.execute_params(connection, params)

    def id_list(self, task_ids: list[Any]) -> Any:
        """Many ids (or seqs) as the value of one bind."""
        return json.dumps(task_ids) if self._ids_as_json else task_ids

    def run(self, statement: HotStatement, connection: Connection, rows: list[dict[str, Any]]) -> int:
        return statement.execute(connection, rows, self.encode_time)


def compile_hot(statement: Any, dialect: Dialect) -> HotStatement:
    """A statement of the hot path compiled for `dialect`, its time and text binds marked."""
    return HotStatement.compile(statement, dialect, time_binds=_TIME_BINDS, text_binds=_TEXT_BINDS)


def _sqlite_max_binds() -> int:
    """How many binds one statement may carry in this process's SQLite (a build-time limit)."""
    connection = sqlite3.connect(":memory:")
    try:
        return connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    finally:
        connection.close()


def _time_binds() -> set[str]:
    """Bind names that carry datetimes: the columns' own names, their `v_` update forms, v_now."""
    names = {column.name for table in (TASKS, ATTEMPTS) for column in table.c if isinstance(column.type, UTCDateTime)}
    return names | {f"v_{name}" for name in names} | {"v_now"}


def _text_binds() -> dict[str, Callable[[str], str]]:
    """Bind names that carry task text, with the repair that makes each storable (storable.py):
    the columns' own names and their `v_` update forms."""
    binds: dict[str, Callable[[str], str]] = {}
    for table in (TASKS, INTAKE, ATTEMPTS):
        for column in table.c:
            clean = cleaner_for(column.name)
            if clean is not None:
                binds[column.name] = binds[f"v_{column.name}"] = clean
    return binds


_TIME_BINDS = _time_binds()
_TEXT_BINDS = _text_binds()


def _guarded_update(columns: tuple[str, ...]) -> Any:
    # WHERE id AND owner AND attempt AND status=running: the fencing of every attempt write.
    guard = (
        (TASKS.c.id == bindparam("b_id"))
        & (TASKS.c.owner == bindparam("b_owner"))
        & (TASKS.c.attempt == bindparam("b_attempt"))
        & (TASKS.c.status == TaskStatus.RUNNING.value)
    )
    values: dict[str, Any] = {column: bindparam(f"v_{column}") for column in columns}
    if "retries_used" in values:
        # An outcome that does not say keeps the count the row has.
        values["retries_used"] = func.coalesce(values["retries_used"], TASKS.c.retries_used)
    return update(TASKS).where(guard).values({**values, "updated_at": bindparam("v_now")})


def _guarded_params(
    task_id: str, attempt: int, values: dict[str, Any], columns: tuple[str, ...], *, owner: str, now: datetime
) -> dict[str, Any]:
    params = {"b_id": task_id, "b_owner": owner, "b_attempt": attempt, "v_now": now}
    params.update({f"v_{column}": values.get(column) for column in columns})
    return params


def apply_batch(
    connection: Connection,
    batch: Batch,
    statements: Statements,
    *,
    owner: str,
    now: datetime,
    new_rows: list[Any],
) -> BatchResult:
    """Apply a batch in order: inserts, progress, finishes, then claims (a retry's claim follows its finish).

    `new_rows` is `statements.new_rows(batch.inserts)`, made before the transaction began.
    """
    result = BatchResult()
    inserts = batch.inserts
    statements.insert_new_rows(connection, new_rows)
    # A persisted row moved in as RUNNING is the claim its task waits for.
    result.claimed.update((row["id"], row["attempt"]) for row in inserts if row["status"] == _RUNNING)
    statements.run(statements.insert_attempt, connection, batch.attempt_rows)
    if batch.progress:
        rows = [
            _guarded_params(p.task_id, p.attempt, p.values, PROGRESS_COLUMNS, owner=owner, now=now)
            for p in batch.progress
        ]
        statements.run(statements.progress, connection, rows)
    if batch.finishes:
        result.rejected = _write_finishes(connection, batch.finishes, statements, owner=owner, now=now)
    if batch.claims:
        result.claimed.update(claim(connection, batch.claims, statements, owner=owner, now=now))
    return result


def _named(column: Any, bind: str, as_json: bool) -> Any:
    """`column` is one of a list given in one bind: a JSON array on SQLite, an array on PostgreSQL."""
    if as_json:
        return column.in_(select(literal_column("value")).select_from(func.json_each(bindparam(bind))))
    return column == func.any(bindparam(bind))


def _write_finishes(
    connection: Connection, finishes: list[Finish], statements: Statements, *, owner: str, now: datetime
) -> list[str]:
    def params(finish: Finish) -> dict[str, Any]:
        return _guarded_params(finish.task_id, finish.attempt, finish.values, FINISH_COLUMNS, owner=owner, now=now)

    rows = statements.run(statements.finish, connection, [params(f) for f in finishes])
    if rows == len(finishes):
        accepted = finishes
    else:
        # Some rows moved on (taken over after a lost lease). The fast path cannot say which, so
        # re-apply one by one: an applied update matches nothing again, so ask the row itself.
        accepted = [
            f
            for f in finishes
            if statements.run(statements.finish, connection, [params(f)]) == 1 or _already(connection, f, owner)
        ]
    statements.run(statements.insert_attempt, connection, [f.attempt_row for f in accepted if f.attempt_row])
    accepted_ids = {f.task_id for f in accepted}
    return [f.task_id for f in finishes if f.task_id not in accepted_ids]


def _already(connection: Connection, finish: Finish, owner: str) -> bool:
    """True when the row already holds this finish (applied by the fast path in this transaction)."""
    statement = TASKS.select().with_only_columns(TASKS.c.owner, TASKS.c.attempt, TASKS.c.status)
    row = connection.execute(statement.where(TASKS.c.id == finish.task_id)).first()
    if row is None:
        return False
    return bool(row.owner == owner and row.attempt == finish.attempt and row.status == finish.values["status"])


def _claim(ids_as_json: bool) -> Any:
    """PENDING -> RUNNING for the named rows this owner holds (bind `ids`), returning their attempt."""
    return (
        update(TASKS)
        .where(
            _named(TASKS.c.id, "ids", ids_as_json),
            # `status || ''` keeps SQLite from looking rows up by the status index, which scans
            # every pending row per claim, a cost that grows with the backlog; by primary key
            # it is a few lookups.
            TASKS.c.status.concat("") == TaskStatus.PENDING.value,
            TASKS.c.owner == bindparam("owner"),
            TASKS.c.cancel_requested.is_(False),
        )
        .values(
            status=TaskStatus.RUNNING.value,
            attempt=TASKS.c.attempt + 1,
            started_at=bindparam("v_now"),
            updated_at=bindparam("v_now"),
            next_run_at=None,
        )
        .returning(TASKS.c.id, TASKS.c.attempt)
    )


def claim(
    connection: Connection, task_ids: list[str], statements: Statements, *, owner: str, now: datetime
) -> dict[str, int]:
    """PENDING -> RUNNING for the rows this owner holds; the only way into RUNNING."""
    claimed: dict[str, int] = {}
    statement = statements.claim
    for start in range(0, len(task_ids), CHUNK):
        values = {"ids": statements.id_list(task_ids[start : start + CHUNK]), "owner": owner, "v_now": now}
        rows = connection.exec_driver_sql(statement.sql, statement.params(values, statements.encode_time))
        claimed.update((task_id, attempt) for task_id, attempt in rows)
    return claimed
