"""Application factory: `uvicorn --factory app.main:create_app`, or `create_app(settings)` in tests."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api import health, pages, tasks
from app.config import Settings, get_settings
from app.db import make_engine
from app.taskflow import TaskAdmin
from app.tasks import task_manager


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    logging.getLogger("app").setLevel(logging.INFO)
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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with task_manager.lifespan():
            yield
        engine.dispose()

    app = FastAPI(title=settings.app_name, lifespan=lifespan)
    app.state.settings = settings
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
    return app
