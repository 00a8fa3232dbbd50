"""Login state every instance must agree on: failed-login limits and sessions ended by logout.

Both live in two small tables of the task database (created on first use), so the limit and a
logout hold on every instance that shares the database (PostgreSQL, or one SQLite file).
Keys are hashes: a user name or address of any length or content becomes a fixed-size key.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, case, delete, select
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from ..store import Store

metadata = MetaData()

LOGIN_FAILURES = Table(
    "taskflow_admin_login_failures",
    metadata,
    Column("key", String(80), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("window_start", Float, nullable=False, index=True),
)

REVOKED_SESSIONS = Table(
    "taskflow_admin_revoked_sessions",
    metadata,
    Column("session_id", String(80), primary_key=True),
    Column("expires_at", Float, nullable=False, index=True),
)


def _digest(kind: str, value: str) -> str:
    return f"{kind}:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def _upsert(dialect: str) -> Any:
    # Each dialect has its own INSERT with ON CONFLICT.
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if dialect == "postgresql" else sqlite.insert


class SharedTables:
    """The task store's connection to these tables, created once per store."""

    def __init__(self, store: Callable[[], Store]) -> None:
        self._store = store
        self._ready: set[int] = set()
        self._lock = threading.Lock()

    def _prepared(self) -> Store:
        store = self._store()
        if id(store) not in self._ready:
            with self._lock:
                if id(store) not in self._ready:
                    store.write(lambda c: metadata.create_all(c, checkfirst=True))
                    self._ready.add(id(store))
        return store

    def write(self, operation: Callable[[Connection, str], Any]) -> Any:
        store = self._prepared()
        return store.write(lambda c: operation(c, store.dialect))

    def read(self, operation: Callable[[Connection], Any]) -> Any:
        return self._prepared().read(operation)


@dataclass(frozen=True)
class LoginLimit:
    """At most `per_user` failed logins per user name and `per_address` per client address in
    each `window` seconds; past that, every login (even a correct one) is refused until the
    window ends."""

    per_user: int = 10
    per_address: int = 50
    window: float = 300.0

    def __post_init__(self) -> None:
        if self.per_user < 1 or self.per_address < 1 or self.window <= 0:
            raise ValueError(
                "TaskAdmin: login_limit needs per_user >= 1, per_address >= 1 and window > 0 seconds, "
                f"got {self.per_user}, {self.per_address}, {self.window}"
            )


@dataclass(frozen=True)
class LoginState:
    retry_after: int | None  # seconds until a login is allowed again; None: allowed now
    user_failures: int  # failed logins of this user in the current window


class LoginThrottle:
    def __init__(self, tables: SharedTables, limit: LoginLimit) -> None:
        self._tables = tables
        self.limit = limit

    def _keys(self, username: str, address: str) -> dict[str, int]:
        return {_digest("user", username): self.limit.per_user, _digest("addr", address): self.limit.per_address}

    async def check(self, username: str, address: str) -> LoginState:
        """Whether a login of this user from this address is allowed now (one read)."""
        keys = self._keys(username, address)
        now = time.time()

        def read(connection: Connection) -> list[Any]:
            query = select(LOGIN_FAILURES).where(LOGIN_FAILURES.c.key.in_(list(keys)))
            return list(connection.execute(query))

        rows = [
            row
            for row in await asyncio.to_thread(self._tables.read, read)
            if row.window_start + self.limit.window > now
        ]
        waits = [row.window_start + self.limit.window - now for row in rows if row.failures >= keys[row.key]]
        user_key = _digest("user", username)
        return LoginState(
            retry_after=max(1, math.ceil(max(waits))) if waits else None,
            user_failures=sum(row.failures for row in rows if row.key == user_key),
        )

    async def failed(self, username: str, address: str) -> None:
        """Count one failed login against the user and the address (one transaction, any instance)."""
        keys = list(self._keys(username, address))
        now = time.time()
        expired_before = now - self.limit.window

        def write(connection: Connection, dialect: str) -> None:
            connection.execute(delete(LOGIN_FAILURES).where(LOGIN_FAILURES.c.window_start <= expired_before))
            insert = _upsert(dialect)
            for key in keys:
                stale = LOGIN_FAILURES.c.window_start <= expired_before
                statement = insert(LOGIN_FAILURES).values(key=key, failures=1, window_start=now)
                statement = statement.on_conflict_do_update(
                    index_elements=[LOGIN_FAILURES.c.key],
                    set_={
                        "failures": case((stale, 1), else_=LOGIN_FAILURES.c.failures + 1),
                        "window_start": case((stale, now), else_=LOGIN_FAILURES.c.window_start),
                    },
                )
                connection.execute(statement)

        await asyncio.to_thread(self._tables.write, write)

    async def succeeded(self, username: str) -> None:
        """A correct login clears its user's count (the address keeps its own)."""
        key = _digest("user", username)
        await asyncio.to_thread(
            self._tables.write, lambda c, _d: c.execute(delete(LOGIN_FAILURES).where(LOGIN_FAILURES.c.key == key))
        )


class SessionRevocations:
    """Session ids ended by logout, kept until the session would have expired anyway."""

    def __init__(self, tables: SharedTables) -> None:
        self._tables = tables
        self._local: set[str] = set()  # this instance knows its own logouts without asking

    async def revoke(self, session_id: str, *, max_age: float) -> None:
        if len(self._local) >= 10_000:
            self._local.clear()  # only a shortcut: the table stays the authority
        self._local.add(session_id)
        now = time.time()
        key = _digest("session", session_id)

        def write(connection: Connection, dialect: str) -> None:
            connection.execute(delete(REVOKED_SESSIONS).where(REVOKED_SESSIONS.c.expires_at <= now))
            statement = _upsert(dialect)(REVOKED_SESSIONS).values(session_id=key, expires_at=now + max_age)
            connection.execute(statement.on_conflict_do_nothing(index_elements=[REVOKED_SESSIONS.c.session_id]))

        await asyncio.to_thread(self._tables.write, write)

    async def is_revoked(self, session_id: str) -> bool:
        if session_id in self._local:
            return True
        key = _digest("session", session_id)

        def read(connection: Connection) -> bool:
            query = select(REVOKED_SESSIONS.c.session_id).where(REVOKED_SESSIONS.c.session_id == key)
            return connection.execute(query).first() is not None

        return bool(await asyncio.to_thread(self._tables.read, read))
