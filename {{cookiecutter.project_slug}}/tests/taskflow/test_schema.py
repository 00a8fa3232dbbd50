"""How taskflow writes what its tables hold (the tables themselves: test_migrations.py)."""

from __future__ import annotations


def test_sqlite_times_are_written_in_the_text_form_sqlalchemy_reads() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    from sqlalchemy.dialects import sqlite

    from app.taskflow.store.sqlite import _sqlite_time

    to_text = sqlite.DATETIME().bind_processor(sqlite.dialect())
    moments = [
        datetime(2026, 11, 28, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 11, 29, 0, 0, 0, 0, tzinfo=UTC),  # no microseconds: still six digits
        datetime(2026, 3, 29, 3, 30, 0, 5, tzinfo=timezone(timedelta(hours=2))),  # another offset
        datetime(987, 6, 5, 4, 3, 2, 1, tzinfo=UTC),
    ]
    for moment in moments * 2:  # the second time round, from the cache of recent seconds
        assert _sqlite_time(moment) == to_text(moment.astimezone(UTC).replace(tzinfo=None))


def test_a_new_row_holds_every_column_of_the_task_table_with_the_models_defaults() -> None:
    from app.taskflow.models import TaskRecord, TaskStatus, new_task_row

    row = new_task_row(id="t-1", name="job", max_attempts=3)
    model = TaskRecord(id="t-1", name="job")
    assert set(row) == set(TaskRecord.__table__.c.keys())  # type: ignore[attr-defined]
    assert row["status"] == TaskStatus.PENDING.value
    assert (row["max_attempts"], row["attempt"], row["persist"]) == (3, model.attempt, model.persist)
    assert row["updated_at"] == row["created_at"]
