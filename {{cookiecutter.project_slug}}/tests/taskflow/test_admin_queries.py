"""The admin's read queries use their indexes (EXPLAIN), so lists stay fast with millions of rows."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Connection

from app.taskflow import TaskManager, TaskStatus
from app.taskflow.models import TaskRecord
from app.taskflow.store import TaskFilter, queries
from app.taskflow.store import leases as lease_sql

from .sql import captured, write_sql

ROWS = 2000
NOW = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(database_url: str) -> Iterator[Any]:
    manager = TaskManager(database_url=database_url)
    store = manager.store
    statuses = [status.value for status in TaskStatus]
    rows = [
        {
            "id": str(uuid.uuid4()),
            "name": f"task_{n % 7}",
            "status": statuses[n % len(statuses)],
            "arguments": "{}",
            "created_at": NOW - timedelta(seconds=n),
            "updated_at": NOW,
            "started_at": NOW - timedelta(seconds=n),
            "finished_at": NOW - timedelta(seconds=n) + timedelta(milliseconds=n % 500),
        }
        for n in range(ROWS)
    ]
    write_sql(store, lambda c: c.execute(insert(TaskRecord.__table__), rows))  # type: ignore[attr-defined]
    if store.dialect == "postgresql":
        write_sql(store, lambda c: c.exec_driver_sql("ANALYZE taskflow_tasks"))
    yield store
    store.dispose()


def plan(store: Any, query: Callable[[Connection], Any]) -> str:
    """The query plan of the (last) statement `query` runs, as one lower-case string."""

    def explain(connection: Connection) -> str:
        with captured(connection) as statements:
            query(connection)
        sql, parameters = statements[-1]
        if store.dialect == "sqlite":
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters).fetchall()
            return "\n".join(str(row[-1]) for row in rows).lower()
        # Small test tables favour sequential and bitmap scans plus a sort; forbid them, as a table of
        # millions would, to see whether an index can serve the query in order.
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            connection.exec_driver_sql(f"SET LOCAL {setting} = off")
        rows = connection.exec_driver_sql(f"EXPLAIN {sql}", parameters).fetchall()
        return "\n".join(str(row[0]) for row in rows).lower()

    return write_sql(store, explain)


LISTS = {
    "unfiltered": (TaskFilter(), "ix_taskflow_tasks_created"),
    "status": (TaskFilter(status=TaskStatus.FAILED), "ix_taskflow_tasks_status_created"),
    "name": (TaskFilter(name="task_3"), "ix_taskflow_tasks_name_created"),
    "status and time": (
        TaskFilter(status=TaskStatus.SUCCESS, since=NOW - timedelta(hours=1), until=NOW),
        "ix_taskflow_tasks_status_created",
    ),
}


@pytest.mark.parametrize("case", list(LISTS))
def test_list_query_walks_an_index_without_sorting(store, case) -> None:
    task_filter, index = LISTS[case]
    text = plan(store, lambda c: queries.list_tasks(c, task_filter, limit=51, offset=0))
    if store.dialect == "sqlite":
        assert index in text, text
        # A sort of the whole result would read every matching row before the LIMIT.
        assert "use temp b-tree for order by" not in text, text
    else:
        # In index order (an incremental sort only breaks created_at ties by id), stopping at the LIMIT.
        assert text.startswith("limit") and "index scan" in text and "ix_taskflow_tasks_" in text, text
        assert "seq scan" not in text and "->  sort" not in text, text


@pytest.mark.parametrize("case", ["unfiltered", "status"])
def test_capped_count_uses_an_index(store, case) -> None:
    task_filter, _ = LISTS[case]
    text = plan(store, lambda c: queries.count_tasks_capped(c, task_filter, cap=10_000))
    assert "index" in text and "seq scan" not in text, text


@pytest.mark.parametrize("status", [TaskStatus.SUCCESS, TaskStatus.FAILED])
def test_metrics_window_uses_the_status_index(store, status) -> None:
    text = plan(store, lambda c: queries.recent_finished(c, status, limit=2000))
    # PostgreSQL may prefer walking created_at and filtering on a small table; either is in order.
    assert "ix_taskflow_tasks_status_created" in text or store.dialect == "postgresql", text
    assert "index scan" in text or "using index" in text, text
    assert "temp b-tree" not in text and "->  sort" not in text and "seq scan" not in text, text


@pytest.mark.parametrize("names", [None, ["task_1", "task_2"]])
def test_every_ticks_probe_for_released_tasks_reads_only_the_index_of_unowned_rows(store, names) -> None:
    # Every pending row of the fixture is unowned; the probe must still not walk the status index,
    # which in a real backlog holds every pending row of every instance.
    text = plan(store, lambda c: lease_sql.released_ids(c, limit=1, names=names))
    assert "ix_taskflow_tasks_unowned" in text, text
    assert "ix_taskflow_tasks_status_created" not in text and "seq scan" not in text, text


def test_capped_count_stops_at_the_cap(store) -> None:
    everything = store.summary_page(TaskFilter(), limit=1, offset=0, count_cap=100)
    assert (everything.total, everything.exact) == (100, False)
    one_name = store.summary_page(TaskFilter(name="task_1"), limit=1, offset=0, count_cap=10_000)
    assert (one_name.total, one_name.exact) == (286, True)


def test_a_status_filter_takes_the_enum_or_its_text(store: Any) -> None:
    by_enum = store.list(TaskFilter(status=TaskStatus.FAILED), limit=ROWS)
    by_text = store.list(TaskFilter(status="failed"), limit=ROWS)
    assert by_enum and [row.id for row in by_text] == [row.id for row in by_enum]
    assert {row.status for row in by_text} == {"failed"}


def test_an_unknown_status_filter_names_the_statuses_there_are() -> None:
    with pytest.raises(ValueError, match="'done' is not one of pending, running, success, failed"):
        TaskFilter(status="done")
