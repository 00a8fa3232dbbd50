"""With database=postgresql the service keeps its tasks in PostgreSQL (kept only in such bakes)."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.config import Settings
from app.main import create_app

from .conftest import require_service


def test_tasks_are_stored_in_the_configured_postgresql_database(settings: Settings) -> None:
    backend = make_url(settings.database_url).get_backend_name()
    require_service(
        "PostgreSQL", backend == "postgresql", "set DATABASE_URL (or TEST_DATABASE_URL) to a PostgreSQL URL"
    )
    with TestClient(create_app(settings)) as client:
        task_id = client.post("/reports", params={"seconds": 1}).json()["task_id"]
        deadline = time.monotonic() + 30
        while client.get(f"/tasks/{task_id}", auth=("admin", "admin-password")).json().get("status") != "success":
            assert time.monotonic() < deadline, "the report did not finish"
            time.sleep(0.05)
    engine = create_engine(settings.database_url)
    with engine.connect() as connection:
        status = connection.execute(text("SELECT status FROM taskflow_tasks WHERE id = :id"), {"id": task_id}).scalar()
    engine.dispose()
    assert status == "success"
