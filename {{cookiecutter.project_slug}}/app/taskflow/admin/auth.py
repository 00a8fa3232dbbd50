"""Who may use the admin: one dependency guards every route (JSON, pages and the event stream)."""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field

from fastapi import HTTPException, Request, status
from fastapi.security import HTTPBasic, HTTPBasicCredentials


class Role(enum.StrEnum):
    ADMIN = "admin"  # may look and act (retry, cancel)
    VIEWER = "viewer"  # may look only


@dataclass(frozen=True)
class Principal:
    username: str
    role: Role

    @property
    def can_act(self) -> bool:
        return self.role is Role.ADMIN


ANONYMOUS = Principal("anonymous", Role.ADMIN)


@dataclass(frozen=True)
class Credentials:
    """Configured users; empty means the admin is open (the reference library's default)."""

    users: dict[str, tuple[str, Role]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        *,
        username: str | None,
        password: str | None,
        readonly_username: str | None = None,
        readonly_password: str | None = None,
    ) -> Credentials:
        users: dict[str, tuple[str, Role]] = {}
        if username and password:
            users[username] = (password, Role.ADMIN)
        if readonly_username and readonly_password:
            users[readonly_username] = (readonly_password, Role.VIEWER)
        return cls(users)

    @property
    def open(self) -> bool:
        return not self.users

    def check(self, username: str, password: str) -> Principal | None:
        """Constant-time comparison; unknown users cost the same as wrong passwords."""
        expected, role = self.users.get(username, ("\x00" * 32, Role.VIEWER))
        password_ok = secrets.compare_digest(password.encode(), expected.encode())
        if password_ok and username in self.users:
            return Principal(username, role)
        return None


basic = HTTPBasic(auto_error=False, realm="taskflow admin")


async def require_principal(request: Request) -> Principal:
    """The admin router's one dependency: Basic credentials (or, for pages, a session)."""
    credentials: Credentials = request.app.state.taskflow_admin.credentials
    if credentials.open:
        return ANONYMOUS
    supplied: HTTPBasicCredentials | None = await basic(request)
    if supplied is not None:
        principal = credentials.check(supplied.username, supplied.password)
        if principal is not None:
            return principal
    raise HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="admin credentials required",
        headers={"WWW-Authenticate": 'Basic realm="taskflow admin"'},
    )
