"""TaskAdmin: mounts the admin (JSON API and dashboard) and, optionally, installs the manager."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI

from ..store import TaskFilter
from .auth import Credentials, require_principal

if TYPE_CHECKING:
    from ..manager import TaskManager

logger = logging.getLogger("taskflow.admin")


class TaskAdmin:
    """`TaskAdmin(app, task_manager, path="/tasks", auto_install=False, display_func_args=False)`.

    Give `username` and `password` (and optionally a read-only pair) to require credentials;
    without them the admin stays open, as in the reference library, and a warning is logged.
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
    ) -> None:
        self.task_manager = task_manager
        self.path = "/" + path.strip("/")
        self.display_func_args = display_func_args
        self.title = title
        self.secret_key = secret_key
        self.credentials = Credentials.build(
            username=username,
            password=password,
            readonly_username=readonly_username,
            readonly_password=readonly_password,
        )
        app.state.taskflow_admin = self
        app.include_router(self.router())
        if auto_install:
            task_manager.install(app)
        if manage_lifespan:
            task_manager.attach_lifespan(app)
        self._warn_if_open(app)

    def router(self) -> APIRouter:
        from . import api

        # One auth dependency on the outer router covers every admin route.
        router = APIRouter(dependencies=[Depends(require_principal)], tags=["taskflow"])
        router.include_router(api.router, prefix=self.path)
        return router

    def _warn_if_open(self, app: FastAPI) -> None:
        if not self.credentials.open:
            return
        inner = app.router.lifespan_context
        path = self.path

        @asynccontextmanager
        async def lifespan(app_: Any) -> AsyncIterator[Any]:
            logger.warning(
                "taskflow: the admin at %s has NO credentials: anyone who can reach this service can read "
                "and control its tasks. Pass username= and password= to TaskAdmin.",
                path,
            )
            async with inner(app_) as state:
                yield state

        app.router.lifespan_context = lifespan

    @staticmethod
    def as_utc(value: datetime | None) -> datetime | None:
        """Query times as aware UTC, like the stored ones (a naive time is taken as UTC)."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def list_page(self, task_filter: TaskFilter, limit: int, offset: int) -> tuple[list[Any], int]:
        store = self.task_manager.store
        return store.list(task_filter, limit=limit, offset=offset), store.count(task_filter)
