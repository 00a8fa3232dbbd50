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


def shard(value: str) -> tuple[int, int]:
    """TEST_SHARD="i/n" -> (i, n): run the i-th of n slices of the suite (1-based)."""
    index, _, count = value.partition("/")
    if index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count):
        return int(index), int(count)
    raise pytest.UsageError(f"TEST_SHARD={value!r} must be i/n with 1 <= i <= n (example: TEST_SHARD=1/2)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # TEST_SHARD splits one run into n processes that can run side by side (CI on several
    # cores): every n-th test, so each slice gets a share of every file, slow ones included.
    if not (value := os.environ.get("TEST_SHARD", "").strip()):
        return
    index, count = shard(value)
    slices: tuple[list[pytest.Item], list[pytest.Item]] = ([], [])
    for position, item in enumerate(items):
        slices[position % count == index - 1].append(item)
    deselected, kept = slices
    config.hook.pytest_deselected(items=deselected)
    items[:] = kept


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
