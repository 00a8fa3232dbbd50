"""auto_install: routes that declare `background_tasks: BackgroundTasks` get ManagedBackgroundTasks.

FastAPI builds a request's BackgroundTasks in one place (`fastapi.dependencies.utils`, when a
route or dependency declares the parameter). We replace that one constructor with a factory
that asks a context variable which manager serves the current request; a small ASGI middleware
sets it for apps that called install(). Apps that did not install keep plain BackgroundTasks,
even in the same process.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import fastapi.dependencies.utils as fastapi_dependencies
from fastapi import BackgroundTasks, FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from .background import ManagedBackgroundTasks

if TYPE_CHECKING:
    from .manager import TaskManager

_serving: ContextVar[TaskManager | None] = ContextVar("taskflow_serving_manager", default=None)
_patch_lock = threading.Lock()
_ORIGINAL = BackgroundTasks


def _background_tasks_factory(*args: Any, **kwargs: Any) -> BackgroundTasks:
    manager = _serving.get()
    if manager is None:
        return _ORIGINAL(*args, **kwargs)
    return ManagedBackgroundTasks(manager)


class ServeManagerMiddleware:
    """Marks every request of the app as served by one TaskManager."""

    def __init__(self, app: ASGIApp, task_manager: TaskManager) -> None:
        self.app = app
        self.task_manager = task_manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _serving.set(self.task_manager)
        try:
            await self.app(scope, receive, send)
        finally:
            _serving.reset(token)


def install(app: FastAPI, task_manager: TaskManager) -> None:
    """Make `BackgroundTasks` and `ManagedBackgroundTasks` parameters of this app managed."""
    if getattr(app.state, "taskflow_installed", None) is task_manager:
        return
    with _patch_lock:
        # FastAPI builds a request's BackgroundTasks through this module-level name.
        setattr(fastapi_dependencies, "BackgroundTasks", _background_tasks_factory)  # noqa: B010
    app.add_middleware(ServeManagerMiddleware, task_manager=task_manager)
    app.state.taskflow_installed = task_manager
