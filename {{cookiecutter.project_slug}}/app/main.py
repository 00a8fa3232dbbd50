"""The application: `uvicorn app.main:app` (or `fastapi run`), `uvicorn --factory app.main:create_app`,
or `create_app(settings)` in tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from typing import Any

from fastapi import FastAPI

from app.api import health, pages, tasks
from app.config import Settings, get_settings
from app.db import make_engine
from app.logging_setup import configure_logging
from app.request_id import RequestIdMiddleware
from app.schema import prepare
from app.taskflow import TaskAdmin
from app.tasks import configure_task_manager, task_manager
from app.tracing_setup import configure_tracing


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    # Before anything opens the database: a schema behind the code stops here, with one line.
    prepare(settings)
    configure_task_manager(settings)
    engine = make_engine(settings.database_url)
    tracer_provider = configure_tracing(settings)
    if tracer_provider is not None:
        task_manager.enable_tracing(tracer_provider)
    else:
        task_manager.disable_tracing()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with task_manager.lifespan():
            yield
        engine.dispose()
        if tracer_provider is not None:
            tracer_provider.shutdown()  # sends the spans still batched

    # FastAPI's own request spans (its `telemetry` argument needs the version the tracing extra pins).
    telemetry: dict[str, Any] = {} if tracer_provider is None else {"telemetry": {"tracer_provider": tracer_provider}}
    app = FastAPI(title=settings.app_name, lifespan=lifespan, **telemetry)
    app.state.settings = settings
    app.state.tracer_provider = tracer_provider
    app.state.engine = engine
    app.include_router(health.router)
    app.include_router(tasks.router)
    TaskAdmin(
        app,
        task_manager,
        path="/tasks",
        auto_install=True,
        display_func_args=settings.admin_show_arguments,
        username=settings.admin_username,
        password=settings.admin_password.get_secret_value() if settings.admin_password else None,
        readonly_username=settings.admin_readonly_username,
        readonly_password=(
            settings.admin_readonly_password.get_secret_value() if settings.admin_readonly_password else None
        ),
        secret_key=settings.secret_key.get_secret_value() or None,
        title=settings.app_name,
        manage_lifespan=False,
        pages=[pages.page],
        include_in_schema=settings.admin_openapi,
    )
    app.add_middleware(RequestIdMiddleware)  # added last: outermost, so the admin's routes have an id too
    return app


@cache
def _app_from_the_environment() -> FastAPI:
    return create_app()


def __getattr__(name: str) -> FastAPI:
    # `app` is built on first use, not on import: importing create_app (tests do) reads no
    # settings and opens no database.
    if name == "app":
        return _app_from_the_environment()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    # Listed, so that `fastapi run` finds `app` the way it finds a module-level one.
    return sorted([*globals(), "app"])
