"""Fixtures shared by the service's tests: a fresh database per test, an app, a client.

The database server comes from TEST_DATABASE_URL, else from DATABASE_URL (environment or .env):
a SQLite URL gives each test its own file; a PostgreSQL URL gives each test its own database
on that server, dropped afterwards. Tests marked `postgresql` or `redis` need those servers:
outside CI they skip with a reason, with CI=true they fail when the server is missing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.config import Settings

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TEST_POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def require_service(name: str, reachable: bool, how: str) -> None:
    """Skip (outside CI) or fail (CI=true) when a test's server is missing."""
    if reachable:
        return
    message = f"{name} is not reachable: {how}"
    if IN_CI:
        pytest.fail(f"CI=true and {message}")
    pytest.skip(message)


def postgres_reachable(url: str = TEST_POSTGRES_URL) -> bool:
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


def redis_reachable(url: str = TEST_REDIS_URL) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3)
        client.ping()
        client.close()
        return True
    except Exception:
        return False


def configured_database_url() -> str:
    return os.environ.get("TEST_DATABASE_URL") or Settings().database_url


def _create_postgres_database(server_url: str) -> tuple[str, str]:
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(server_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False), name


def _drop_postgres_database(server_url: str, name: str) -> None:
    admin = create_engine(make_url(server_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of the configured kind."""
    configured = configured_database_url()
    if make_url(configured).get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'app.db'}"
        return
    require_service("PostgreSQL", postgres_reachable(configured), "start it or set TEST_DATABASE_URL")
    url, name = _create_postgres_database(configured)
    try:
        yield url
    finally:
        _drop_postgres_database(configured, name)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        secret_key="test-secret-key",
        admin_username="admin",
        admin_password="admin-password",
        admin_readonly_username="viewer",
        admin_readonly_password="viewer-password",
    )
