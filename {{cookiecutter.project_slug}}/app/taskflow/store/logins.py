"""Admin login SQL: failed-login counts and sessions ended by logout, shared by every instance.

Both tables come from the migrations (taskflow_0003). Keys arrive hashed (admin/limits.py), so
a user name or address of any length or content is a fixed-size key here.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from ..models import AdminLoginFailure, AdminRevokedSession

LOGIN_FAILURES = AdminLoginFailure.__table__  # type: ignore[attr-defined]
REVOKED_SESSIONS = AdminRevokedSession.__table__  # type: ignore[attr-defined]


def _insert(connection: Connection) -> Any:
    # Each dialect has its own INSERT with ON CONFLICT.
    return postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert


def login_failures(connection: Connection, keys: Collection[str]) -> list[Any]:
    """The failure rows (key, failures, window_start) of these keys, expired windows included."""
    return list(connection.execute(select(LOGIN_FAILURES).where(LOGIN_FAILURES.c.key.in_(list(keys)))))


def count_login_failure(connection: Connection, keys: Collection[str], *, now: float, window: float) -> None:
    """One more failure for each key: a key whose window ended starts a new one at `now`."""
    expired_before = now - window
    connection.execute(delete(LOGIN_FAILURES).where(LOGIN_FAILURES.c.window_start <= expired_before))
    stale = LOGIN_FAILURES.c.window_start <= expired_before
    for key in keys:
        statement = _insert(connection)(LOGIN_FAILURES).values(key=key, failures=1, window_start=now)
        statement = statement.on_conflict_do_update(
            index_elements=[LOGIN_FAILURES.c.key],
            set_={
                "failures": case((stale, 1), else_=LOGIN_FAILURES.c.failures + 1),
                "window_start": case((stale, now), else_=LOGIN_FAILURES.c.window_start),
            },
        )
        connection.execute(statement)


def clear_login_failures(connection: Connection, key: str) -> None:
    connection.execute(delete(LOGIN_FAILURES).where(LOGIN_FAILURES.c.key == key))


def revoke_session(connection: Connection, session_key: str, *, now: float, expires_at: float) -> None:
    """Record a logout until `expires_at`; revocations that ran out are deleted on the way."""
    connection.execute(delete(REVOKED_SESSIONS).where(REVOKED_SESSIONS.c.expires_at <= now))
    statement = _insert(connection)(REVOKED_SESSIONS).values(session_id=session_key, expires_at=expires_at)
    connection.execute(statement.on_conflict_do_nothing(index_elements=[REVOKED_SESSIONS.c.session_id]))


def is_session_revoked(connection: Connection, session_key: str) -> bool:
    query = select(REVOKED_SESSIONS.c.session_id).where(REVOKED_SESSIONS.c.session_id == session_key)
    return connection.execute(query).first() is not None
