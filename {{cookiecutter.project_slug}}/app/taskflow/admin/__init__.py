"""TaskAdmin: mounts the admin (JSON API, dashboard, event stream) and, optionally, installs the manager.

Every admin route hangs off ONE router whose dependency is `require_principal` (auth.py); only
the login form is outside it. Module map: api.py (JSON), pages.py + views.py + templates/
(HTML), sse.py (live rows), static.py (vendored htmx), login.py, guards.py (mutations),
service.py (what the routes call), bulk.py + bulk_api.py + bulk_pages.py (bulk actions and
purge), ../metrics.py (metrics and Prometheus).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI

from ..metrics import prometheus_registry
from ..store import TaskFilter
from .auth import Credentials, Principal, PrincipalDep, Role, get_admin, require_principal
from .filters import as_utc
from .guards import ActorDep, OpenAdminHosts
from .headers import SecurityHeaders
from .inputs import InputGuard
from .limits import LoginLimit, LoginThrottle, SessionRevocations
from .session import SessionSigner
from .templating import create_templates

if TYPE_CHECKING:
    from ..manager import TaskManager

logger = logging.getLogger("taskflow.admin")

__all__ = [
    "ActorDep",
    "AdminPage",
    "LoginLimit",
    "Principal",
    "PrincipalDep",
    "Role",
    "TaskAdmin",
    "get_admin",
    "require_principal",
]


@dataclass(frozen=True)
class AdminPage:
    """A page added to the dashboard (see docs/admin.md): its routes, its nav entry, its templates.

    The router is included under `<path>/dashboard` behind the admin's auth; `endpoint` is the
    route name the navigation links to; `templates` is searched before the admin's own templates.
    """

    router: APIRouter
    label: str
    endpoint: str
    templates: Path | None = None


class TaskAdmin:
    """`TaskAdmin(app, task_manager, path="/tasks", auto_install=False, display_func_args=False)`.

    Give `username` and `password` (and optionally a read-only pair) to require credentials;
    without them the admin stays open, as in the reference library, and a warning is logged,
    but it accepts actions (retry, cancel) only from this machine unless `allowed_hosts` lists
    the Host names to accept them for. The admin routes are not in the OpenAPI schema unless
    `include_in_schema=True`.
    """

    def __init__(
        self,
        app: FastAPI,
        task_manager: TaskManager,
        path: str = "/tasks",
        auto_install: bool = False,
        display_func_args: bool = False,
        *,
        username: str | None = None,
        password: str | None = None,
        readonly_username: str | None = None,
        readonly_password: str | None = None,
        secret_key: str | None = None,
        title: str = "Tasks",
        manage_lifespan: bool = True,
        pages: Sequence[AdminPage] = (),
        trusted_origins: Sequence[str] = (),
        count_cap: int | None = 10_000,
        metrics_ttl: float = 2.0,
        session_max_age: int = 12 * 3600,
        login_limit: LoginLimit | None = None,
        allowed_hosts: Sequence[str] | None = None,
        include_in_schema: bool = False,
        authenticate: Callable[..., Any] | None = None,
    ) -> None:
        from .. import __version__
        from .service import AdminService
        from .templating import Renderer

        self.task_manager = task_manager
        self.path = "/" + path.strip("/")
        self.display_func_args = display_func_args
        self.title = title
        self.version = __version__
        self.credentials = Credentials.build(
            username=username,
            password=password,
            readonly_username=readonly_username,
            readonly_password=readonly_password,
        )
        # The service's own authentication, if it has one: a FastAPI dependency that returns a
        # Principal or raises (e.g. 401). It takes the place of require_principal, the one auth
        # dependency of every admin route, so the admin's own credentials are then not used.
        self.authenticate = authenticate
        if authenticate is not None:
            app.dependency_overrides[require_principal] = authenticate
        # Without a configured key, sessions are signed with a per-process key: they end on restart
        # and are not shared between instances (configure SECRET_KEY for either).
        self.secret_key = secret_key or secrets.token_urlsafe(32)
        self.sessions = SessionSigner(self.secret_key, path=self.path, max_age=session_max_age)
        # Failed-login counts and ended sessions live in the task database: shared by every instance.
        self.login_throttle = LoginThrottle(lambda: task_manager.store, login_limit or LoginLimit())
        self.revocations = SessionRevocations(lambda: task_manager.store)
        # Origins (scheme://host[:port]) besides the request's own host allowed to send mutations.
        self.trusted_origins = frozenset(origin.rstrip("/") for origin in trusted_origins)
        # Without credentials, actions are accepted only for these Host names (and, by default, only
        # from a loopback client): a DNS-rebinding page or another machine cannot act.
        self.allowed_hosts = OpenAdminHosts.build(allowed_hosts)
        self.include_in_schema = include_in_schema
        self.pages = tuple(pages)
        self.nav = [(page.label, page.endpoint) for page in self.pages]
        self.service = AdminService(task_manager, count_cap=count_cap, metrics_ttl=metrics_ttl)
        self.prometheus = prometheus_registry(
            self.service.insights, task_manager.events, task_manager.metrics.collectors(lambda: task_manager.store)
        )
        templates = create_templates([page.templates for page in self.pages if page.templates is not None])
        self.renderer = Renderer(self, templates)
        app.state.taskflow_admin = self
        # Left out of the public /openapi.json unless asked for: it would map the admin for anyone.
        app.include_router(self.router(), include_in_schema=include_in_schema)
        app.add_middleware(InputGuard, path=self.path)
        app.add_middleware(SecurityHeaders, path=self.path)  # added last: outermost, so on every answer
        if auto_install:
            task_manager.install(app)
        if manage_lifespan:
            task_manager.attach_lifespan(app)
        self._warn_if_open(app)

    def router(self) -> APIRouter:
        from . import api, bulk_api, bulk_pages, login, pages, sse, static

        # One auth dependency on this router covers every admin route: JSON, pages, events, static.
        guarded = APIRouter(dependencies=[Depends(require_principal)], tags=["taskflow"])
        for page in self.pages:
            guarded.include_router(page.router, prefix=f"{self.path}/dashboard", include_in_schema=False)
        for module in (pages, bulk_pages, sse, static, login, bulk_api):
            guarded.include_router(module.router, prefix=self.path, include_in_schema=module not in (pages, bulk_pages))
        # Last: its GET /{task_id} would otherwise take /dashboard, /login, ... for task ids.
        guarded.include_router(api.router, prefix=self.path)
        outer = APIRouter()
        outer.include_router(login.public, prefix=self.path)
        outer.include_router(static.public, prefix=self.path)
        outer.include_router(guarded)
        return outer

    @property
    def open(self) -> bool:
        """True when nobody has to log in: no credentials and no authenticate dependency."""
        return self.credentials.open and self.authenticate is None

    def _warn_if_open(self, app: FastAPI) -> None:
        if not self.open:
            return
        inner = app.router.lifespan_context
        path = self.path
        allowed = self.allowed_hosts.describe()

        @asynccontextmanager
        async def lifespan(app_: Any) -> AsyncIterator[Any]:
            logger.warning(
                "taskflow: the admin at %s has NO credentials: anyone who can reach this service can read "
                "its tasks (actions only from %s). Pass username= and password= to TaskAdmin.",
                path,
                allowed,
            )
            async with inner(app_) as state:
                yield state

        app.router.lifespan_context = lifespan

    # Kept for code written against the first version of this class.
    as_utc = staticmethod(as_utc)

    def list_page(self, task_filter: TaskFilter, limit: int, offset: int) -> tuple[list[Any], int]:
        store = self.task_manager.store
        return store.list(task_filter, limit=limit, offset=offset, with_arguments=True), store.count(task_filter)
