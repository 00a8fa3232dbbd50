"""SQLite's writer inserts a batch's new task rows in a few multi-row statements, not row by row.

What must hold: every row goes in with every value as it was given (as the one-row insert
writes it), whatever the batch size and the SQLite build's bind limit, and a batch of hundreds
of rows takes a handful of statements (each one a step, around which the driver lets go of
the GIL), not one per row.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.taskflow import TaskManager
from app.taskflow.models import new_task_row, utcnow
from app.taskflow.store import Store
from app.taskflow.store.hot import HotStatement, RowsInsert
from app.taskflow.store.writes import TASKS

from .sql import read_sql, write_sql

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def task_row(number: int, owner: str = "host:1:abc") -> dict[str, Any]:
    now = utcnow()
    return new_task_row(
        id=str(uuid.uuid4()),
        name=f"job-{number}",
        status="success" if number % 2 else "pending",
        arguments='{"args": ["d\u00e9j\u00e0 vu", "it\'s"], "kwargs": {"n": ' + str(number) + "}}",
        persist=bool(number % 3),
        attempt=number % 4,
        max_attempts=3,
        owner=owner,
        lease_expires_at=now + timedelta(seconds=30),
        created_at=now - timedelta(microseconds=number),
        updated_at=now,
        started_at=now if number % 2 else None,
        finished_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC) if number % 2 else None,
        result="0.1" if number % 5 == 0 else None,
        progress_done=number,
        progress_message="\u2713 done" if number % 7 == 0 else None,
    )


def stored(store: Store) -> dict[str, tuple[Any, ...]]:
    rows = read_sql(store, lambda c: c.execute(select(TASKS)).all())
    return {row.id: tuple(row) for row in rows}


def insert_statements(store: Store) -> list[str]:
    """Start recording the INSERT statements the write connection steps (one entry per step)."""
    steps: list[str] = []
    write_sql(
        store,
        lambda c: c.connection.driver_connection.set_trace_callback(
            lambda sql: steps.append(sql) if sql.startswith("INSERT INTO taskflow_tasks") else None
        ),
    )
    return steps


async def test_a_batch_of_hundreds_of_rows_goes_in_whole_in_a_few_statements(database_url) -> None:
    many = TaskManager(database_url=database_url)
    one_by_one = TaskManager(database_url=database_url.replace("tasks.db", "one-by-one.db"))
    try:
        rows = [task_row(n) for n in range(300)]  # more than a statement's 256 rows, not a power of two
        steps = insert_statements(many.store)
        statements = many.store.statements
        inserted = write_sql(many.store, lambda c: statements.insert_new_rows(c, statements.new_rows(rows)))
        statement = one_by_one.store.statements.insert_task
        for row in rows:
            write_sql(one_by_one.store, lambda c, row=row: one_by_one.store.statements.run(statement, c, [row]))

        assert inserted == 300
        # 256 + 32 + 8 + 4 rows: four steps. Row by row (an executemany) would have been 300.
        assert len(steps) == 4
        assert stored(many.store) == stored(one_by_one.store)
    finally:
        many.store.dispose()
        one_by_one.store.dispose()


async def test_statements_stay_within_the_sqlite_builds_bind_limit(database_url) -> None:
    manager = TaskManager(database_url=database_url)
    try:
        single = manager.store.statements.insert_task
        # A build limited to 100 binds fits three 26-column rows: statements of two rows at most.
        limited = RowsInsert(single, max_binds=100)
        assert limited.max_rows == 2
        rows = [task_row(n) for n in range(5)]
        steps = insert_statements(manager.store)

        params = manager.store.statements.new_rows(rows)
        inserted = write_sql(manager.store, lambda c: limited.execute_params(c, params))

        assert inserted == 5
        assert [sql.count("), (") + 1 for sql in steps] == [2, 2, 1]
        assert set(stored(manager.store)) == {row["id"] for row in rows}
    finally:
        manager.store.dispose()


async def test_a_statement_that_is_not_a_one_row_insert_is_refused(database_url) -> None:
    manager = TaskManager(database_url=database_url)
    try:
        dialect = manager.store.database.write_engine.dialect
        returning = HotStatement.compile(TASKS.insert().returning(TASKS.c.id), dialect)
        with pytest.raises(ValueError, match="not a one-row INSERT"):
            RowsInsert(returning, max_binds=32766)
    finally:
        manager.store.dispose()
