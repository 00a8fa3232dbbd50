"""The service's schema at start, `make migrate`, and Alembic for the team's own models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect
from sqlmodel import Field, SQLModel

from app.config import Settings
from app.main import create_app
from app.schema import alembic_config, upgrade

from .taskflow.procs import SERVICE_ROOT


class TeamWidget(SQLModel, table=True):
    """A model of the team's own, as a service would add one."""

    __tablename__ = "team_widgets"

    id: int | None = Field(default=None, primary_key=True)
    label: str = Field(max_length=80)


def table_names(database_url: str) -> set[str]:
    engine = create_engine(database_url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_a_start_that_may_not_migrate_stops_on_an_empty_database_with_one_line(settings: Settings) -> None:
    with pytest.raises(SystemExit) as stopped:
        create_app(settings.model_copy(update={"migrate_on_start": False}))
    message = str(stopped.value.code)
    assert message.startswith(
        "ERROR: taskflow: the database has none of taskflow's migrations applied: run `make migrate`"
    )
    assert "\n" not in message
    assert "taskflow_tasks" not in table_names(settings.database_url)


def test_after_make_migrate_a_start_that_may_not_migrate_comes_up(settings: Settings) -> None:
    upgrade(settings.database_url)  # what `make migrate` runs
    with TestClient(create_app(settings.model_copy(update={"migrate_on_start": False}))) as client:
        assert client.get("/healthz").status_code == 200


def test_a_default_start_makes_taskflows_tables(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        assert client.post("/signup", params={"email": "ann@example.com"}).status_code == 202
    assert {"taskflow_tasks", "taskflow_attempts", "taskflow_audit"} <= table_names(settings.database_url)


def test_autogenerate_writes_the_teams_tables_and_leaves_taskflows_to_its_own_history(
    settings: Settings, tmp_path: Path
) -> None:
    upgrade(settings.database_url)  # taskflow's tables are there, and must not be touched
    config = alembic_config(settings.database_url)
    config.set_main_option("version_locations", str(tmp_path))  # not the project's own folder

    command.revision(config, message="add widgets", autogenerate=True)

    [revision] = tmp_path.glob("*add_widgets.py")
    source = revision.read_text(encoding="utf-8")
    assert 'create_table(\n        "team_widgets"' in source
    assert "taskflow_" not in source
    command.upgrade(config, "heads")
    command.check(config)  # the models and the migrations now agree
    assert "team_widgets" in table_names(settings.database_url)


@pytest.mark.processes
def test_a_service_process_behind_the_code_exits_with_one_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(SERVICE_ROOT),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        "MIGRATE_ON_START": "false",
        "REDIS_URL": "",
    }
    command_line = [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app", "--port", "0"]
    result = subprocess.run(command_line, cwd=SERVICE_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "ERROR: taskflow: the database has none of taskflow's migrations applied: run `make migrate` "
        "(or let the start apply them: migrate_on_start=True, MIGRATE_ON_START=true in the service)"
    ]
