"""Login state every instance must agree on: failed-login limits and sessions ended by logout.

Both live in two small tables of the task database (made by taskflow's migrations; SQL in
store/logins.py), so the limit and a logout hold on every instance that shares the database
(PostgreSQL, or one SQLite file). Keys are hashes: a user name or address of any length or
content becomes a fixed-size key.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..store import Store

# The task manager's store, read at each call: a test or a reconfigured manager may replace it.
StoreOf = Callable[[], "Store"]


def _digest(kind: str, value: str) -> str:
    return f"{kind}:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:40]


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
    def __init__(self, store: StoreOf, limit: LoginLimit) -> None:
        self._store = store
        self.limit = limit

    def _keys(self, username: str, address: str) -> dict[str, int]:
        return {_digest("user", username): self.limit.per_user, _digest("addr", address): self.limit.per_address}

    async def check(self, username: str, address: str) -> LoginState:
        """Whether a login of this user from this address is allowed now (one read)."""
        keys = self._keys(username, address)
        now = time.time()
        found = await asyncio.to_thread(self._store().login_failures, list(keys))
        rows = [row for row in found if row.window_start + self.limit.window > now]
        waits = [row.window_start + self.limit.window - now for row in rows if row.failures >= keys[row.key]]
        user_key = _digest("user", username)
        return LoginState(
            retry_after=max(1, math.ceil(max(waits))) if waits else None,
            user_failures=sum(row.failures for row in rows if row.key == user_key),
        )

    async def failed(self, username: str, address: str) -> None:
        """Count one failed login against the user and the address (one transaction, any instance)."""
        keys = list(self._keys(username, address))
        store = self._store()
        await asyncio.to_thread(lambda: store.count_login_failure(keys, now=time.time(), window=self.limit.window))

    async def succeeded(self, username: str) -> None:
        """A correct login clears its user's count (the address keeps its own)."""
        await asyncio.to_thread(self._store().clear_login_failures, _digest("user", username))


class SessionRevocations:
    """Session ids ended by logout, kept until the session would have expired anyway."""

    def __init__(self, store: StoreOf) -> None:
        self._store = store
        self._local: set[str] = set()  # this instance knows its own logouts without asking

    async def revoke(self, session_id: str, *, max_age: float) -> None:
        if len(self._local) >= 10_000:
            self._local.clear()  # only a shortcut: the table stays the authority
        self._local.add(session_id)
        now = time.time()
        key = _digest("session", session_id)
        store = self._store()
        await asyncio.to_thread(lambda: store.revoke_session(key, now=now, expires_at=now + max_age))

    async def is_revoked(self, session_id: str) -> bool:
        if session_id in self._local:
            return True
        return await asyncio.to_thread(self._store().is_session_revoked, _digest("session", session_id))
