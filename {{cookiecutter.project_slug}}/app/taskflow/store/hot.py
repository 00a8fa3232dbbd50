"""The few statements every task runs through, compiled once and executed by the driver.

SQLAlchemy builds these statements (no SQL is written by hand) but per-row bind processing
would cost more than the database work itself on the hot path (tens of microseconds a row).
So each statement is compiled once for the dialect and run with `exec_driver_sql`, with the
values already in the driver's form: the dialect's Database supplies `encode_time`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
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
    # Positions (or names) of the binds that carry datetimes, which the driver needs encoded.
    times: tuple[Any, ...]
    _pick: Callable[[dict[str, Any]], tuple[Any, ...]] | None = field(default=None, repr=False)

    @classmethod
    def compile(cls, statement: ClauseElement, dialect: Dialect, *, time_binds: Collection[str] = ()) -> HotStatement:
        compiled = statement.compile(dialect=dialect)
        fixed = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
        if compiled.positional and compiled.positiontup is not None:
            order = tuple(compiled.positiontup)
            times: tuple[Any, ...] = tuple(i for i, name in enumerate(order) if name in time_binds)
            pick = itemgetter(*order) if len(order) > 1 else (lambda values: (values[order[0]],))
            return cls(compiled.string, order, fixed, times, pick)
        return cls(compiled.string, None, fixed, tuple(name for name in compiled.binds if name in time_binds))

    def params(self, values: dict[str, Any], encode_time: Callable[[datetime], Any]) -> Any:
        """The row's values in the driver's form. Every bind must be in `values` (or fixed)."""
        if self.fixed:
            values = {**self.fixed, **values}
        if self._pick is None:
            named = dict(values)
            for name in self.times:
                if named.get(name) is not None:
                    named[name] = encode_time(named[name])
            return named
        # Positional drivers: C-speed extraction in bind order, then only the datetime slots.
        row = self._pick(values)
        if not self.times:
            return row
        encoded = list(row)
        for index in self.times:
            if encoded[index] is not None:
                encoded[index] = encode_time(encoded[index])
        return tuple(encoded)

    def execute(
        self, connection: Connection, rows: Sequence[dict[str, Any]], encode_time: Callable[[datetime], Any]
    ) -> int:
        """Run for every row (executemany); returns the total row count the driver reports."""
        if not rows:
            return 0
        params = [self.params(row, encode_time) for row in rows]
        result = connection.exec_driver_sql(self.sql, params if len(params) > 1 else params[0])
        return result.rowcount
