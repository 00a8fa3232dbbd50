"""Application factory: `uvicorn --factory app.main:create_app`, or `create_app(settings)` in tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api import health, pages, tasks
from app.config import Settings, get_settings
from app.db import make_engine
from app.logging_setup import configure_logging
from app.request_id import RequestIdMiddleware
from app.taskflow import TaskAdmin
from app.tasks import task_manager
from app.tracing_setup import configure_tracing


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    task_manager.configure(
        database_url=settings.database_url,
        redis_url=settings.redis_url,
        concurrency=settings.task_concurrency,
        threads=settings.task_thread_pool,
        shutdown_timeout=settings.task_shutdown_timeout,
        lease_seconds=settings.task_lease_seconds,
        max_recoveries=settings.task_max_recoveries,
        keep_finished=None if settings.task_keep_finished_days is None else settings.task_keep_finished_days * 86400,
    )
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
    telemetry = {} if tracer_provider is None else {"telemetry": {"tracer_provider": tracer_provider}}
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
    )
    app.add_middleware(RequestIdMiddleware)  # added last: outermost, so the admin's routes have an id too
    return app
