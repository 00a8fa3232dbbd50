"""Raw SQL on a store's own engines, for tests that plant rows or inspect what is stored.

taskflow's modules call the store's named operations; a test may need a connection the
operations do not give (rows in a shape no operation writes, a query plan, a pragma).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

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
