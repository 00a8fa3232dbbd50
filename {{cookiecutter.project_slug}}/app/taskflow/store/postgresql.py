"""PostgreSQL: a pooled engine; every store operation takes the base's plain path (engine.py)."""

from __future__ import annotations

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from .engine import Database


class PostgresDatabase(Database):
    def _create_write_engine(self) -> Engine:
        # pool_pre_ping replaces connections the server dropped (restart, failover) before use;
        # connect_timeout turns an unreachable server into an error instead of a hang.
        return create_engine(
            self.url, pool_pre_ping=True, pool_size=10, max_overflow=10, connect_args={"connect_timeout": 10}
        )
