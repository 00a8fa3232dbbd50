"""Raw SQL on a store's own engines, for tests that plant rows or inspect what is stored.

taskflow's modules call the store's named operations; a test may need a connection the
operations do not give (rows in a shape no operation writes, a query plan, a pragma).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Connection

from app.taskflow.store import Store

T = TypeVar("T")


def write_sql(store: Store, operation: Callable[[Connection], T]) -> T:
    """Run `operation` in one write transaction of `store`, committed on return."""
    with store.writing() as connection:
        return operation(connection)


def read_sql(store: Store, operation: Callable[[Connection], T]) -> T:
    """Run `operation` on a read connection of `store`."""
    with store.reading() as connection:
        return operation(connection)


@contextmanager
def captured(connection: Connection) -> Iterator[list[tuple[str, Any]]]:
    """The SQL and parameters sent on `connection` while the block runs."""
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        statements.append((statement, parameters))

    event.listen(connection, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(connection, "before_cursor_execute", record)


def query_plan(connection: Connection, sql: str, parameters: Any, *, table: str) -> str:
    """The plan the database picks for `sql` (as captured), in lower case. On PostgreSQL `table`
    is analyzed first and sequential and bitmap scans are off for the rest of the transaction,
    so the plan tells whether an index can serve the statement at all, whatever the table's size."""
    if connection.dialect.name == "sqlite":
        rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters).fetchall()
        return "\n".join(str(row[-1]) for row in rows).lower()
    connection.exec_driver_sql(f"ANALYZE {table}")
    for setting in ("enable_seqscan", "enable_bitmapscan"):
        connection.exec_driver_sql(f"SET LOCAL {setting} = off")
    rows = connection.exec_driver_sql(f"EXPLAIN {sql}", parameters).fetchall()
    return "\n".join(str(row[0]) for row in rows).lower()
