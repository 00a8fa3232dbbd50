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


def test_sqlite_times_are_written_in_the_text_form_sqlalchemy_reads() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    from sqlalchemy.dialects import sqlite

    from app.taskflow.store.engine import _sqlite_time

    to_text = sqlite.DATETIME().bind_processor(sqlite.dialect())
    moments = [
        datetime(2026, 11, 28, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 11, 29, 0, 0, 0, 0, tzinfo=UTC),  # no microseconds: still six digits
        datetime(2026, 3, 29, 3, 30, 0, 5, tzinfo=timezone(timedelta(hours=2))),  # another offset
        datetime(987, 6, 5, 4, 3, 2, 1, tzinfo=UTC),
    ]
    for moment in moments * 2:  # the second time round, from the cache of recent seconds
        assert _sqlite_time(moment) == to_text(moment.astimezone(UTC).replace(tzinfo=None))
