"""The few statements every task runs through, compiled once and executed by the driver.

SQLAlchemy builds these statements (no SQL is written by hand) but per-row bind processing
would cost more than the database work itself on the hot path (tens of microseconds a row).
So each statement is compiled once for the dialect and run with `exec_driver_sql`, with the
values already in the driver's form: the dialect's Database supplies `encode_time`. Every
text bind is made storable on the way (see storable.py): no other write path carries task text.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from operator import itemgetter
from typing import Any, cast

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


@dataclass(frozen=True)
class HotStatement:
    sql: str
    # Bind names in positional order (qmark/format paramstyles); None for named paramstyles.
    order: tuple[str, ...] | None
    # Values of binds SQLAlchemy made from literals in the statement (e.g. a status constant).
    fixed: dict[str, Any]
    # Positions (or names) of the binds that carry datetimes, which the driver needs encoded.
    times: tuple[Any, ...]
    # Positions (or names) of the binds that carry text, each with the repair it gets (storable.py).
    texts: tuple[tuple[Any, Callable[[str], str]], ...] = ()
    _pick: Callable[[dict[str, Any]], tuple[Any, ...]] | None = field(default=None, repr=False)

    @classmethod
    def compile(
        cls,
        statement: ClauseElement,
        dialect: Dialect,
        *,
        time_binds: Collection[str] = (),
        text_binds: Mapping[str, Callable[[str], str]] | None = None,
    ) -> HotStatement:
        # The SQL compiler's binds and positions are not on the base `Compiled` type.
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        fixed = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
        text_binds = text_binds or {}
        if compiled.positional and compiled.positiontup is not None:
            order = tuple(compiled.positiontup)
            times: tuple[Any, ...] = tuple(i for i, name in enumerate(order) if name in time_binds)
            texts = tuple((i, text_binds[name]) for i, name in enumerate(order) if name in text_binds)
            pick = itemgetter(*order) if len(order) > 1 else (lambda values: (values[order[0]],))
            return cls(compiled.string, order, fixed, times, texts, pick)
        names = tuple(compiled.binds)
        return cls(
            compiled.string,
            None,
            fixed,
            tuple(name for name in names if name in time_binds),
            tuple((name, text_binds[name]) for name in names if name in text_binds),
        )

    def params(self, values: dict[str, Any], encode_time: Callable[[datetime], Any]) -> Any:
        """The row's values in the driver's form. Every bind must be in `values` (or fixed)."""
        if self.fixed:
            values = {**self.fixed, **values}
        if self._pick is None:
            named = dict(values)
            for name in self.times:
                if named.get(name) is not None:
                    named[name] = encode_time(named[name])
            for name, repair in self.texts:
                if named.get(name) is not None:
                    named[name] = repair(named[name])
            return named
        # Positional drivers: C-speed extraction in bind order, then only the datetime and text slots.
        row = self._pick(values)
        if not self.times and not self.texts:
            return row
        encoded = list(row)
        for index in self.times:
            if encoded[index] is not None:
                encoded[index] = encode_time(encoded[index])
        for index, repair in self.texts:
            if encoded[index] is not None:
                encoded[index] = repair(encoded[index])
        return tuple(encoded)

    def execute(
        self, connection: Connection, rows: Sequence[dict[str, Any]], encode_time: Callable[[datetime], Any]
    ) -> int:
        """Run for every row (executemany); returns the total row count the driver reports."""
        return self.execute_params(connection, [self.params(row, encode_time) for row in rows])

    def execute_params(self, connection: Connection, params: Sequence[Any]) -> int:
        """execute() with the rows already in the driver's form (see params())."""
        if not params:
            return 0
        result = connection.exec_driver_sql(self.sql, params if len(params) > 1 else params[0])
        return result.rowcount


class RowsInsert:
    """An INSERT of many rows in a few statements of many rows each (SQLite's multi-row VALUES).

    Python's sqlite3 runs an executemany one row at a time and lets go of the GIL around each
    row's step. Taking it back while the event loop holds it means waiting, up to the switch
    interval, and being woken at each of the loop's turns meanwhile: a batch of a few hundred
    rows cost the loop three thread wake-ups per row, while requests were being served. In
    statements of up to `max_rows` rows (sizes in powers of two) it lets go a few times per
    batch instead.
    """

    def __init__(self, single: HotStatement, *, max_binds: int) -> None:
        if single.order is None or single.fixed:
            raise ValueError("RowsInsert needs a positional driver and a bind for every column")
        # SQLAlchemy compiled the one-row form; an n-row form repeats its VALUES group n times,
        # because compiling every batch size with SQLAlchemy is slow at first use.
        head, values, group = single.sql.partition(" VALUES ")
        if not values or group.count("(") != 1 or not (group.startswith("(") and group.endswith(")")):
            raise ValueError(f"not a one-row INSERT ... VALUES (...): {single.sql!r}")
        self._head = head + values
        self._group = group
        fits = max(1, max_binds // len(single.order))
        self.max_rows = 1 << (min(fits, 256).bit_length() - 1)  # the largest power of two that fits
        self._sql: dict[int, str] = {1: single.sql}

    def sql(self, rows: int) -> str:
        """The statement that inserts `rows` rows."""
        text = self._sql.get(rows)
        if text is None:
            text = self._sql[rows] = self._head + ", ".join([self._group] * rows)
        return text

    def execute_params(self, connection: Connection, params: Sequence[Any]) -> int:
        """Insert rows already in the driver's form (the one-row statement's params()); returns
        how many the database inserted."""
        inserted = 0
        start = 0
        while start < len(params):
            size = min(self.max_rows, 1 << ((len(params) - start).bit_length() - 1))
            chunk = params[start] if size == 1 else tuple(chain.from_iterable(params[start : start + size]))
            inserted += connection.exec_driver_sql(self.sql(size), chunk).rowcount
            start += size
        return inserted
