"""Task arguments are bounded, and list views never read the big text columns.

A too-large argument is refused in add_task with a TypeError that names it and the limit; list
pages, their fragments, the event stream and the JSON list select no arguments, result,
traceback or log column, so their cost does not grow with what tasks were given or returned.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from app.taskflow import ManagedBackgroundTasks
from app.taskflow.arguments import DEFAULT_MAX_ARGUMENT_BYTES

from .conftest import ADMIN, wait_for_status


async def test_an_argument_over_the_default_limit_is_refused_at_add_task(make_manager) -> None:
    manager = make_manager()

    @manager.task(name="store_blob", persist=True)
    def store_blob(label: str, blob: str = "", items: list[str] | None = None) -> None:
        return None

    async with manager.lifespan():
        tasks = ManagedBackgroundTasks(manager)
        with pytest.raises(TypeError, match=r"argument 'blob' of task 'store_blob' is \d+ bytes.*limit of 65536"):
            tasks.add_task(store_blob, "big", blob="x" * (DEFAULT_MAX_ARGUMENT_BYTES + 1))
        with pytest.raises(TypeError, match=r"argument 'items' .* over the limit of 65536 bytes"):
            tasks.add_task(store_blob, "many", items=["y" * 1000] * 100)  # small strings, a big list
        with pytest.raises(TypeError, match=r"argument 'blob' .* over the limit"):
            tasks.add_task(store_blob, "quoted", "\u0001" * 20_000)  # escapes make JSON 6x the text
        fitting = tasks.add_task(store_blob, "fits", blob="z" * (DEFAULT_MAX_ARGUMENT_BYTES - 100))
        await tasks()
        await manager.wait_idle()
        await manager.flush()
        rows = await asyncio.to_thread(lambda: manager.store.list(_everything(), limit=10, offset=0))
    assert [row.id for row in rows] == [fitting]  # nothing of the refused calls was stored


async def test_the_limit_is_configurable(make_manager) -> None:
    manager = make_manager(max_argument_bytes=1000)

    @manager.task(name="small_only")
    def small_only(text: str) -> None:
        return None

    async with manager.lifespan():
        tasks = ManagedBackgroundTasks(manager)
        tasks.add_task(small_only, "a" * 900)
        with pytest.raises(TypeError, match=r"argument 'text' of task 'small_only' .* limit of 1000 bytes"):
            tasks.add_task(small_only, "a" * 1001)


def test_a_limit_below_one_byte_is_refused(make_manager) -> None:
    with pytest.raises(ValueError, match="max_argument_bytes must be >= 1"):
        make_manager(max_argument_bytes=0)


def _everything() -> Any:
    from app.taskflow.store import TaskFilter

    return TaskFilter()


BIG_COLUMNS = re.compile(
    r"taskflow_tasks\.(arguments|result|traceback)\b|taskflow_attempts\.logs\b|SELECT taskflow_tasks\.\*", re.I
)


@contextmanager
def selects_of(manager: Any) -> Iterator[list[str]]:
    """Every SELECT the store's engines run while the block runs."""
    statements: list[str] = []
    engines = {manager.store.database.read_engine, manager.store.database.write_engine}

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


async def test_lists_fragments_and_the_stream_never_read_the_big_columns(make_manager, make_app, client_for) -> None:
    manager = make_manager()

    @manager.task(name="payload", persist=True)
    def payload(blob: str) -> str:
        return blob * 2

    app = make_app(manager, display_func_args=True)
    async with client_for(app, auth=ADMIN) as client:
        task_id = manager.enqueue(payload, kwargs={"blob": "b" * 30_000})
        await wait_for_status(manager, task_id, "success")
        with selects_of(manager) as statements:
            responses = [
                await client.get("/tasks"),
                await client.get("/tasks", params={"q": "payload"}),
                await client.get("/tasks/dashboard"),
                await client.get("/tasks/dashboard/partials/table"),
            ]
            manager.shutting_down.set()  # the stream ends after its snapshot
            responses.append(await client.get("/tasks/dashboard/events"))
        detail = await client.get(f"/tasks/{task_id}")
    assert all(response.status_code == 200 for response in responses)
    assert task_id in responses[0].text and task_id in responses[4].text
    assert statements, "the lists read the database"
    offending = [statement for statement in statements if BIG_COLUMNS.search(statement)]
    assert not offending, offending[0]
    assert all(len(response.content) < 30_000 for response in responses)
    # The task's own page and detail still show everything.
    assert detail.json()["kwargs"] == {"blob": "b" * 30_000} and len(detail.json()["result"]) == 60_000
