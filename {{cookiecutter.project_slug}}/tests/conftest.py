"""Fixtures shared by the service's tests: a fresh database per test, an app, a client.

The database server comes from TEST_DATABASE_URL, else from DATABASE_URL (environment or .env):
a SQLite URL gives each test its own file; a PostgreSQL URL gives each test its own database
on that server, dropped afterwards. Tests marked `postgresql` or `redis` need those servers:
outside CI they skip with a reason, with CI=true they fail when the server is missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from app.config import Settings

# Reaching real servers, and skipping or failing when they are missing, is shared with the
# vendored task system's own tests.
from .taskflow.services import (
    IN_CI,
    postgres_database,
    postgres_reachable,
    redis_reachable,
    require_service,
)
from .taskflow.services import POSTGRES_URL as TEST_POSTGRES_URL
from .taskflow.services import REDIS_URL as TEST_REDIS_URL

__all__ = ["IN_CI", "TEST_POSTGRES_URL", "TEST_REDIS_URL", "postgres_reachable", "redis_reachable", "require_service"]


def configured_database_url() -> str:
    return os.environ.get("TEST_DATABASE_URL") or Settings().database_url


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of the configured kind."""
    configured = configured_database_url()
    if make_url(configured).get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'app.db'}"
        return
    require_service("PostgreSQL", postgres_reachable(configured), "start it or set TEST_DATABASE_URL")
    with postgres_database(configured) as url:
        yield url


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        secret_key="test-secret-key-long-enough-for-the-check",
        admin_username="admin",
        admin_password="admin-password",
        admin_readonly_username="viewer",
        admin_readonly_password="viewer-password",
    )
