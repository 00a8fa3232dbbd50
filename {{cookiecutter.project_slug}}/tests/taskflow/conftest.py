"""Fixtures for taskflow's own tests. Every store-backed test runs on SQLite and on PostgreSQL.

`database_url` gives each test a fresh SQLite file or a fresh PostgreSQL database;
`make_manager` builds TaskManagers with short leases and polls and stops them afterwards;
`make_app` builds a FastAPI app around a manager; `eventually` waits on a condition with a
generous deadline instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.taskflow import TaskAdmin, TaskManager

from .services import postgres_database, require_postgres

ADMIN = ("admin", "admin-password")
VIEWER = ("viewer", "viewer-password")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tasks.db'}"
        return
    require_postgres()
    with postgres_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tasks.db'}"


ManagerFactory = Callable[..., TaskManager]


@pytest.fixture
async def make_manager(database_url: str) -> AsyncIterator[ManagerFactory]:
    """Build a started-on-demand TaskManager on this test's database; all are stopped at the end."""
    managers: list[TaskManager] = []

    def factory(**options: Any) -> TaskManager:
        options.setdefault("database_url", database_url)
        options.setdefault("lease_seconds", 5.0)
        options.setdefault("poll_interval", 0.05)
        options.setdefault("shutdown_timeout", 5.0)
        manager = TaskManager(**options)
        managers.append(manager)
        return manager

    try:
        yield factory
    finally:
        async with contextlib.AsyncExitStack() as stack:
            # Every store is closed, even when a stop before it fails (the failure still shows).
            for manager in managers:
                stack.callback(manager.store.dispose)
            for manager in managers:
                while manager.running:
                    await manager.stop()


@pytest.fixture
def make_app() -> Callable[..., FastAPI]:
    def factory(manager: TaskManager, *, auto_install: bool = True, credentials: bool = True, **admin: Any) -> FastAPI:
        app = FastAPI()
        if credentials:
            admin.setdefault("username", ADMIN[0])
            admin.setdefault("password", ADMIN[1])
            admin.setdefault("readonly_username", VIEWER[0])
            admin.setdefault("readonly_password", VIEWER[1])
            admin.setdefault("secret_key", "test-secret-key")
        TaskAdmin(app, manager, auto_install=auto_install, **admin)
        return app

    return factory


async def eventually(
    condition: Callable[[], Awaitable[bool]] | Callable[[], bool], *, timeout: float = 20.0, interval: float = 0.02
) -> None:
    """Poll `condition` until it is true; fail with a clear message after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {getattr(condition, '__name__', condition)}")
        await asyncio.sleep(interval)


async def task_status(manager: TaskManager, task_id: str) -> str | None:
    await manager.flush()
    row = await asyncio.to_thread(manager.store.get, task_id)
    return None if row is None else row.status


async def wait_for_status(manager: TaskManager, task_id: str, *statuses: str, timeout: float = 20.0) -> Any:
    async def reached() -> bool:
        return await task_status(manager, task_id) in statuses

    await eventually(reached, timeout=timeout)
    return await asyncio.to_thread(manager.store.get, task_id)


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[[FastAPI], Any]]:
    """`async with client_for(app) as client:` runs the app's lifespan around an httpx client."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def open_client(app: FastAPI, **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver", **kwargs) as client:
                yield client

    yield open_client
