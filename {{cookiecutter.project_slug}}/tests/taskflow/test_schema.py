"""The tables taskflow creates, and what it changes in a database an earlier version made."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect

from app.taskflow.models import RETIRED_INDEXES


async def test_a_database_made_by_an_earlier_version_loses_its_retired_indexes(make_manager, database_url) -> None:
    make_manager().store.create_tables()
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            for name in RETIRED_INDEXES:  # as the earlier version left them
                connection.exec_driver_sql(f"CREATE INDEX {name} ON taskflow_tasks (status, lease_expires_at)")
        engine.dispose()

        make_manager().store.create_tables()  # the next start, with this version

        indexes = {index["name"] for index in inspect(engine).get_indexes("taskflow_tasks")}
        assert indexes.isdisjoint(RETIRED_INDEXES)
        assert "ix_taskflow_tasks_status_created" in indexes  # the one recovery and heartbeats use
    finally:
        engine.dispose()
