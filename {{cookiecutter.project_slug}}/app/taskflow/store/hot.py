"""The few statements every task runs through, compiled once and executed by the driver.

SQLAlchemy builds these statements (no SQL is written by hand) but per-row bind processing
would cost more than the database work itself on the hot path (tens of microseconds a row).
So each statement is compiled once for the dialect and run with `exec_driver_sql`, with the
values already in the driver's form: the dialect's Database supplies `encode_time`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import ClauseElement


@dataclass(frozen=True)
class HotStatement:
    sql: str
    # Bind names in positional order (qmark/format paramstyles); None for named paramstyles.
    order: tuple[str, ...] | None
    # Values of binds SQLAlchemy made from literals in the statement (e.g. a status constant).
    fixed: dict[str, Any]

    @classmethod
    def compile(cls, statement: ClauseElement, dialect: Dialect) -> HotStatement:
        compiled = statement.compile(dialect=dialect)
        fixed = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
        order = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup is not None else None
        return cls(compiled.string, order, fixed)

    def params(self, values: dict[str, Any], encode_time: Callable[[datetime], Any]) -> Any:
        merged = {**self.fixed, **values}
        for key, value in merged.items():
            if isinstance(value, datetime):
                merged[key] = encode_time(value)
        if self.order is None:
            return merged
        return tuple(merged.get(name) for name in self.order)

    def execute(
        self, connection: Connection, rows: Sequence[dict[str, Any]], encode_time: Callable[[datetime], Any]
    ) -> int:
        """Run for every row (executemany); returns the total row count the driver reports."""
        if not rows:
            return 0
        params = [self.params(row, encode_time) for row in rows]
        result = connection.exec_driver_sql(self.sql, params if len(params) > 1 else params[0])
        return result.rowcount
