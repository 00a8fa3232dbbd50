"""Who may use the admin: one dependency guards every route (JSON, pages, event stream, static).

A request is authenticated by HTTP Basic credentials (scripts, `curl -u`) or by the dashboard's
signed session cookie (browsers, after the login form). Without either, a browser navigating to
a page is redirected to the login form (303) and everything else gets 401, so no data leaks.
"""

from __future__ import annotations

import enum
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Literal
from urllib.parse import urlencode

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPBasic, HTTPBasicCredentials

if TYPE_CHECKING:
    from . import TaskAdmin

logger = logging.getLogger("taskflow.admin")


class Role(enum.StrEnum):
    ADMIN = "admin"  # may look and act (retry, cancel)
    VIEWER = "viewer"  # may look only


@dataclass(frozen=True)
class Principal:
    username: str
    role: Role
    # How this request proved who it is: mutations from a session need a CSRF token, Basic ones don't.
    via: Literal["basic", "session", "open"] = "basic"
    csrf: str | None = None
    session_id: str | None = None  # the session logout ends

    @property
    def can_act(self) -> bool:
        return self.role is Role.ADMIN


ANONYMOUS = Principal("anonymous", Role.ADMIN, via="open")


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

    def password_of(self, username: str) -> str | None:
        entry = self.users.get(username)
        return entry[0] if entry else None

    def role_of(self, username: str) -> Role | None:
        entry = self.users.get(username)
        return entry[1] if entry else None


basic = HTTPBasic(auto_error=False, realm="taskflow admin")


def get_admin(request: Request) -> TaskAdmin:
    return request.app.state.taskflow_admin  # type: ignore[no-any-return]


async def require_principal(request: Request) -> Principal:
    """The admin router's one dependency: Basic credentials, else the session cookie."""
    admin = get_admin(request)
    credentials = admin.credentials
    supplied: HTTPBasicCredentials | None = await basic(request)
    if supplied is not None and not credentials.open:
        principal = await check_login(request, admin, supplied.username, supplied.password)
        if principal is None:  # wrong credentials never fall back to a cookie
            raise _unauthenticated(request, admin)
        return principal
    session = admin.sessions.load(request)
    # Ended by logout on any instance (sessions issued before session ids existed count as ended).
    if (
        session is not None
        and session.username is not None
        and (not session.session_id or await admin.revocations.is_revoked(session.session_id))
    ):
        session = None
    if credentials.open:
        return Principal(
            ANONYMOUS.username, Role.ADMIN, via="session" if session else "open", csrf=session.csrf if session else None
        )
    if session is not None and session.username is not None:
        role = credentials.role_of(session.username)
        password = credentials.password_of(session.username)
        # A changed password (or a removed user) ends the sessions issued before.
        if (
            role is not None
            and password is not None
            and secrets.compare_digest(session.fingerprint, admin.sessions.fingerprint(password))
        ):
            return Principal(session.username, role, via="session", csrf=session.csrf, session_id=session.session_id)
    raise _unauthenticated(request, admin)


class TooManyLogins(HTTPException):
    def __init__(self, retry_after: int) -> None:
        super().__init__(
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"too many failed logins; try again in {retry_after} seconds",
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def check_login(request: Request, admin: TaskAdmin, username: str, password: str) -> Principal | None:
    """Credentials checked under the failed-login limit (form and Basic alike).

    Raises TooManyLogins while the user or the address is limited, even for a correct password:
    a guesser learns nothing from the answer until the window ends.
    """
    address = client_address(request)
    throttle = admin.login_throttle
    state = await throttle.check(username, address)
    wait = state.retry_after
    if wait is not None:
        logger.warning(
            "taskflow: login of user %r from %s refused: too many failed logins (retry in %d s)",
            username[:100],
            address,
            wait,
        )
        raise TooManyLogins(wait)
    principal = admin.credentials.check(username, password)
    if principal is None:
        logger.warning("taskflow: failed login for user %r from %s", username[:100], address)
        await throttle.failed(username, address)
        return None
    if state.user_failures:
        await throttle.succeeded(username)  # only a login that follows failures writes anything
    return principal


PrincipalDep = Annotated[Principal, Depends(require_principal)]


def wants_page(request: Request) -> bool:
    """A browser navigating to a page (not htmx, not the event stream, not a script)."""
    accept = request.headers.get("accept", "")
    return (
        request.method in {"GET", "HEAD"}
        and "text/html" in accept
        and "HX-Request" not in request.headers
        and "text/event-stream" not in accept
    )


def _unauthenticated(request: Request, admin: TaskAdmin) -> HTTPException:
    login = str(request.url_for("taskflow_login").path)
    if wants_page(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        location = f"{login}?{urlencode({'next': target})}"
        return HTTPException(
            status_code=status.HTTP_303_SEE_OTHER, detail="login required", headers={"Location": location}
        )
    headers = {}
    if "HX-Request" in request.headers:
        headers["HX-Redirect"] = login  # htmx follows this after a session expired
    elif request.headers.get("sec-fetch-mode", "navigate") == "navigate":
        # Only for scripts and navigations: a challenge on a fetch would pop the browser's Basic dialog.
        headers["WWW-Authenticate"] = 'Basic realm="taskflow admin"'
    return HTTPException(status_code=status.HTTP_401_UNAUTHORIZED, detail="admin credentials required", headers=headers)
