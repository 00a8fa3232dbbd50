from __future__ import annotations

import socket

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from app.config import Settings
from app.main import create_app

from .conftest import TEST_POSTGRES_URL, TEST_REDIS_URL, postgres_reachable, redis_reachable, require_service
from .taskflow.services import postgres_database
from .tcp_proxy import TcpProxy


def closed_port() -> int:
    """A port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_healthz_answers_ok_with_a_working_database(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_answers_ok_when_the_database_answers(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok"}}


@pytest.mark.redis
def test_readyz_checks_redis_when_it_is_configured(settings: Settings) -> None:
    require_service("Redis", redis_reachable(TEST_REDIS_URL), "start it or set TEST_REDIS_URL")
    with TestClient(create_app(settings.model_copy(update={"redis_url": TEST_REDIS_URL}))) as client:
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_readyz_answers_503_naming_redis_when_redis_is_unreachable(settings: Settings) -> None:
    unreachable = f"redis://127.0.0.1:{closed_port()}/0"
    with TestClient(create_app(settings.model_copy(update={"redis_url": unreachable}))) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("ConnectionError: "), body


@pytest.mark.postgresql
def test_readyz_answers_503_naming_the_database_when_it_stops_answering(settings: Settings) -> None:
    require_service("PostgreSQL", postgres_reachable(TEST_POSTGRES_URL), "start it or set TEST_POSTGRES_URL")
    with postgres_database(TEST_POSTGRES_URL) as url:
        server = make_url(url)
        proxy = TcpProxy(server.host or "127.0.0.1", server.port or 5432)
        through_proxy = server.set(port=proxy.port).render_as_string(hide_password=False)
        with TestClient(create_app(settings.model_copy(update={"database_url": through_proxy}))) as client:
            assert client.get("/readyz").status_code == 200
            proxy.cut()
            response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"].startswith("OperationalError: "), body
