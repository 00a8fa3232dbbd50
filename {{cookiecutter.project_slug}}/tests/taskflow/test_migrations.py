"""taskflow's tables come from its own Alembic history, and only from there."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, create_engine, inspect, text

from app.taskflow import TaskManager
from app.taskflow.migrations import VERSION_TABLE, SchemaBehind, check, differences, heads, upgrade
from app.taskflow.migrations.__main__ import main, write_revision
from app.taskflow.models import TASKFLOW_TABLES
from app.taskflow.store.engine import open_database

FIRST_REVISION = "taskflow_0001"
BEFORE_LOGIN_TABLES = "taskflow_0002"
BEFORE_SCHEDULES = "taskflow_0003"
ADD_A_MIGRATION = 'add a migration: python -m app.taskflow.migrations revision -m "what changed"'


def version_rows(database_url: str) -> list[str]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
    finally:
        engine.dispose()


def test_the_migrations_make_exactly_the_models_schema(database_url: str) -> None:
    database = open_database(database_url)
    try:
        upgrade(database.write_engine)
        changes = differences(database.read_engine)
    finally:
        database.dispose()
    # A model changed without a migration in taskflow's history lands here.
    assert changes == [], f"{ADD_A_MIGRATION}; the models differ from the migrations by {changes}"
    assert version_rows(database_url) == sorted(heads())


def test_a_column_added_to_a_model_without_a_migration_is_found(database_url: str) -> None:
    models = MetaData()
    for table in TASKFLOW_TABLES:
        table.to_metadata(models)
    models.tables["taskflow_tasks"].append_column(Column("added_without_a_migration", String(100), nullable=True))
    database = open_database(database_url)
    try:
        upgrade(database.write_engine)
        changes = differences(database.read_engine, models)
    finally:
        database.dispose()
    assert [(change[0], change[2], change[3].name) for change in changes] == [
        ("add_column", "taskflow_tasks", "added_without_a_migration")
    ]


def test_two_instances_starting_at_once_on_an_empty_database_both_come_up(database_url: str) -> None:
    databases = [open_database(database_url) for _ in range(2)]
    together = threading.Barrier(len(databases))
    errors: list[BaseException] = []

    def start(database) -> None:  # type: ignore[no-untyped-def]
        together.wait()
        try:
            upgrade(database.write_engine)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=start, args=(database,)) for database in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == []
        assert version_rows(database_url) == sorted(heads())  # made once: one row per head
        assert differences(databases[0].read_engine) == []
    finally:
        for database in databases:
            database.dispose()


async def test_a_manager_that_may_not_migrate_stops_on_an_empty_database_naming_the_command(database_url: str) -> None:
    manager = TaskManager(database_url=database_url, migrate_on_start=False)
    with pytest.raises(SchemaBehind) as stopped:
        await manager.start()
    message = str(stopped.value)
    assert "\n" not in message
    assert "has none of taskflow's migrations applied" in message
    assert "run `make migrate`" in message
    assert not manager.running
    engine = create_engine(database_url)
    try:
        assert "taskflow_tasks" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()


async def test_a_manager_that_may_not_migrate_starts_on_a_current_database(database_url: str) -> None:
    assert main(["upgrade", database_url]) == 0
    manager = TaskManager(database_url=database_url, migrate_on_start=False)
    await manager.start()
    try:
        assert manager.running
    finally:
        await manager.stop()
        manager.store.dispose()


def test_a_database_migrated_by_a_newer_build_stops_the_start(database_url: str) -> None:
    database = open_database(database_url)
    try:
        upgrade(database.write_engine)
        with database.write_engine.begin() as connection:
            connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'from_a_newer_build'"))
        with pytest.raises(SchemaBehind, match="at revision from_a_newer_build, which this code does not know"):
            check(database.read_engine)
    finally:
        database.dispose()


def test_the_check_command_fails_with_one_line_until_the_database_is_upgraded(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", database_url]) == 1
    assert "run `make migrate`" in capsys.readouterr().err.strip()
    assert main(["upgrade", database_url]) == 0
    assert main(["check", database_url]) == 0


def test_a_database_made_before_migrations_is_adopted_and_loses_its_retired_indexes(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        # As an earlier build left it: the first revision's tables, an index since retired, no history.
        upgrade(engine, to=FIRST_REVISION)
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP TABLE {VERSION_TABLE}")
            connection.exec_driver_sql(
                "CREATE INDEX ix_taskflow_tasks_status_lease ON taskflow_tasks (status, lease_expires_at)"
            )
            connection.exec_driver_sql(
                "INSERT INTO taskflow_audit (at, actor, action) VALUES ('2026-01-01 00:00:00', 'ann', 'retry')"
            )
        engine.dispose()

        assert start_upgrades_to_the_models(database_url) == []

        indexes = {index["name"] for index in inspect(engine).get_indexes("taskflow_tasks")}
        assert "ix_taskflow_tasks_status_lease" not in indexes
        assert "ix_taskflow_tasks_status_created" in indexes  # the one recovery and heartbeats use
        with engine.connect() as connection:  # the rows are kept
            assert connection.execute(text("SELECT actor FROM taskflow_audit")).scalars().all() == ["ann"]
        assert version_rows(database_url) == sorted(heads())
    finally:
        engine.dispose()


def start_upgrades_to_the_models(database_url: str) -> list[Any]:
    """What the next start, with this version, leaves different from the models (nothing, we hope)."""
    database = open_database(database_url)
    try:
        upgrade(database.write_engine)
        return differences(database.read_engine)
    finally:
        database.dispose()


def login_tables_as_0_2_0_made_them() -> MetaData:
    """The admin's login tables as 0.2.0 created them at first use (create_all), before a migration did."""
    metadata = MetaData()
    Table(
        "taskflow_admin_login_failures",
        metadata,
        Column("key", String(80), primary_key=True),
        Column("failures", Integer, nullable=False),
        Column("window_start", Float, nullable=False, index=True),
    )
    Table(
        "taskflow_admin_revoked_sessions",
        metadata,
        Column("session_id", String(80), primary_key=True),
        Column("expires_at", Float, nullable=False, index=True),
    )
    return metadata


def test_the_admin_login_tables_come_from_the_migrations(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        upgrade(engine)
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"taskflow_admin_login_failures", "taskflow_admin_revoked_sessions"} <= tables


def test_a_database_whose_admin_made_its_login_tables_upgrades_and_keeps_their_rows(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        # As 0.2.0 left it: migrated to the second revision, the login tables made by the admin.
        upgrade(engine, to=BEFORE_LOGIN_TABLES)
        with engine.begin() as connection:
            login_tables_as_0_2_0_made_them().create_all(connection)
            connection.exec_driver_sql(
                "INSERT INTO taskflow_admin_revoked_sessions (session_id, expires_at) VALUES ('session:ab', 1e12)"
            )
        engine.dispose()

        assert start_upgrades_to_the_models(database_url) == []

        with engine.connect() as connection:  # the rows are kept
            kept = connection.execute(text("SELECT session_id FROM taskflow_admin_revoked_sessions")).scalars().all()
        assert kept == ["session:ab"]
        assert version_rows(database_url) == sorted(heads())
    finally:
        engine.dispose()


def test_the_schedules_table_comes_after_the_login_tables_and_keeps_their_rows(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        upgrade(engine, to=BEFORE_SCHEDULES)  # as a database of a build without schedules left it
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO taskflow_admin_revoked_sessions (session_id, expires_at) VALUES ('session:cd', 1e12)"
            )
        assert "taskflow_schedules" not in inspect(engine).get_table_names()
        engine.dispose()

        assert start_upgrades_to_the_models(database_url) == []

        assert "taskflow_schedules" in inspect(engine).get_table_names()
        with engine.connect() as connection:
            kept = connection.execute(text("SELECT session_id FROM taskflow_admin_revoked_sessions")).scalars().all()
        assert kept == ["session:cd"]
    finally:
        engine.dispose()


def test_a_revision_is_written_only_when_the_models_changed(tmp_path: Path) -> None:
    assert write_revision("nothing changed") is None
