"""Test helpers for real servers: reach them, skip or fail loudly, make throwaway databases.

Outside CI a test whose server is missing skips with a reason that says how to enable it;
with CI=true it fails, so a missing server can never pass as green.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

_reachable: dict[str, bool] = {}


def require_service(name: str, reachable: bool, how: str) -> None:
    if reachable:
        return
    message = f"{name} is not reachable: {how}"
    if IN_CI:
        pytest.fail(f"CI=true and {message}")
    pytest.skip(message)


def postgres_reachable(url: str = POSTGRES_URL) -> bool:
    if url not in _reachable:
        try:
            engine = create_engine(url, connect_args={"connect_timeout": 3})
            with engine.connect():
                pass
            engine.dispose()
            _reachable[url] = True
        except Exception:
            _reachable[url] = False
    return _reachable[url]


def redis_reachable(url: str = REDIS_URL) -> bool:
    if url not in _reachable:
        import redis

        try:
            client = redis.Redis.from_url(url, socket_connect_timeout=3)
            client.ping()
            client.close()
            _reachable[url] = True
        except Exception:
            _reachable[url] = False
    return _reachable[url]


def require_postgres(url: str = POSTGRES_URL) -> None:
    require_service("PostgreSQL", postgres_reachable(url), f"start it at {url} or set TEST_POSTGRES_URL")


def require_redis(url: str = REDIS_URL) -> None:
    require_service("Redis", redis_reachable(url), f"start it at {url} or set TEST_REDIS_URL")


@contextmanager
def postgres_database(server_url: str = POSTGRES_URL) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server, dropped afterwards."""
    name = f"taskflow_test_{uuid.uuid4().hex[:12]}"
    admin_url = make_url(server_url).set(database="postgres")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
