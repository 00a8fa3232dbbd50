"""The dashboard's event stream: coalesced, small, bounded, and it ends on shutdown."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import Request

from app.taskflow import TaskStatus
from app.taskflow.admin.auth import Principal, Role
from app.taskflow.admin.sse import RowStream, View
from app.taskflow.events import EventBus, TaskEvent
from app.taskflow.store import TaskFilter

from .conftest import ADMIN, wait_for_status


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


def build(make_manager: Any, make_app: Any) -> tuple[Any, Any, Any]:
    manager = make_manager()

    @manager.task(name="ok")
    async def ok() -> None:
        return None

    app = make_app(manager, metrics_ttl=0.0)
    return manager, app, ok


def renderer_for(app: Any) -> Any:
    admin = get_admin_from(app)
    principal = Principal("admin", Role.ADMIN, via="basic")
    scope = {"type": "http", "app": app, "router": app.router, "path": "/", "headers": [], "query_string": b""}
    request = Request(scope)

    def render(rows: list[Any], replace: bool, waiting: dict[str, Any]) -> str:
        context = {"rows": rows, "mode": "body" if replace else "rows", "waiting": waiting}
        return admin.renderer.fragment(request, "partials/dashboard_rows.html", context, principal=principal)

    return render


def stream_for(app: Any, manager: Any, *, flush: Any = None, bus: Any = None, **view: Any) -> RowStream:
    return RowStream(
        service=get_admin_from(app).service,
        bus=bus or manager.events,
        stop=manager.shutting_down,
        view=View(task_filter=TaskFilter(), **view),
        render=renderer_for(app),
        flush=flush,
    )


def get_admin_from(app: Any) -> Any:
    return app.state.taskflow_admin


@asynccontextmanager
async def collecting(stream: RowStream) -> AsyncIterator[list[Any]]:
    """Run the stream in the background, collecting its messages; stop it at the end."""
    messages: list[Any] = []

    async def run() -> None:
        async for message in stream.events():
            messages.append(message)

    task = asyncio.create_task(run())
    try:
        yield messages
    finally:
        if task.done():
            task.result()  # a stream that died: show why
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def make_tasks(manager: Any, ok: Any, count: int) -> list[str]:
    ids = [manager.enqueue(ok) for _ in range(count)]
    for task_id in ids:
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
    return ids


async def connected(messages: list[Any]) -> None:
    """Wait for the snapshot every connection starts with."""
    await until(lambda: any(m.event == "rows" for m in messages))


def row_ids(html: str) -> list[str]:
    return re.findall(r'<tr id="task-([0-9a-f-]+)"', html)


async def test_rapid_changes_are_coalesced_into_few_small_events(make_manager, make_app, client_for) -> None:
    manager, app, ok = build(make_manager, make_app)
    async with client_for(app):
        ids = await make_tasks(manager, ok, 60)
        on_page = list(reversed(ids))[:50]
        changing = on_page[:10]
        stream = stream_for(app, manager)
        async with collecting(stream) as messages:
            await connected(messages)
            for step in range(200):  # 200 changes to 10 tasks, as fast as they come
                task_id = changing[step % 10]
                manager.events.publish(
                    TaskEvent(
                        task_id, "ok", "running", progress_done=step, progress_total=200, progress_message=f"s{step}"
                    )
                )
            await until(lambda: len([m for m in messages if m.event == "rows"]) >= 2)
            await asyncio.sleep(0.6)  # anything more would arrive within two more windows
        snapshot, *rows = [m for m in messages if m.event == "rows"]
    assert messages[0].retry == 3000
    assert row_ids(snapshot.raw_data) == on_page  # the page as it was when the stream connected
    assert 1 <= len(rows) <= 2
    sent = [task_id for message in rows for task_id in row_ids(message.raw_data)]
    assert sorted(set(sent)) == sorted(changing)  # only the changed rows, never the page
    assert all('hx-swap-oob="true"' in m.raw_data and "<tbody" not in m.raw_data for m in rows)
    # The last event of each task wins: its latest progress is what is shown.
    last = rows[-1].raw_data
    assert 'value="199.0"' in last or 'value="199"' in last


async def test_new_tasks_send_the_first_page_body(make_manager, make_app, client_for) -> None:
    manager, app, ok = build(make_manager, make_app)
    async with client_for(app):
        await make_tasks(manager, ok, 3)
        stream = stream_for(app, manager, flush=manager.flush, limit=3)
        async with collecting(stream) as messages:
            await connected(messages)
            (new_id,) = await make_tasks(manager, ok, 1)
            await until(lambda: any(m.event == "rows" and new_id in m.raw_data for m in messages))
        body = next(m.raw_data for m in messages[1:] if m.event == "rows" and new_id in m.raw_data)
    assert '<tbody id="task-rows" hx-swap-oob="true">' in body
    assert len(row_ids(body)) == 3 and row_ids(body)[0] == new_id  # bounded by the page size


async def test_a_task_created_before_the_stream_connected_is_in_its_snapshot(
    make_manager, make_app, client_for
) -> None:
    # The browser renders the page, then connects the stream: a task created in between must not
    # be missed, nor its later events sent as updates of a row the browser does not have.
    manager, app, ok = build(make_manager, make_app)
    async with client_for(app):
        rendered = list(reversed(await make_tasks(manager, ok, 2)))
        (created_meanwhile,) = await make_tasks(manager, ok, 1)
        stream = stream_for(app, manager, flush=manager.flush)
        async with collecting(stream) as messages:
            await connected(messages)
        snapshot = next(m for m in messages if m.event == "rows")
    assert '<tbody id="task-rows" hx-swap-oob="true">' in snapshot.raw_data
    assert row_ids(snapshot.raw_data) == [created_meanwhile, *rendered]


async def test_later_pages_only_update_their_own_rows(make_manager, make_app, client_for) -> None:
    manager, app, ok = build(make_manager, make_app)
    async with client_for(app):
        ids = list(reversed(await make_tasks(manager, ok, 4)))
        stream = stream_for(app, manager, offset=2, limit=2)
        async with collecting(stream) as messages:
            await connected(messages)
            for task_id in ids:  # two on page 1, two on page 2
                manager.events.publish(TaskEvent(task_id, "ok", "running", progress_done=1, progress_total=2))
            await make_tasks(manager, ok, 1)  # a new task: page 1 only
            await until(lambda: len([m for m in messages if m.event == "rows"]) >= 2)
            await asyncio.sleep(0.4)
        snapshot, *updates = [m for m in messages if m.event == "rows"]
        sent = [task_id for m in updates for task_id in row_ids(m.raw_data)]
    assert row_ids(snapshot.raw_data) == ids[2:] and "<tbody" not in snapshot.raw_data  # in place
    assert sorted(set(sent)) == sorted(ids[2:])


async def test_a_subscriber_that_overflowed_is_told_to_resync(make_manager, make_app, client_for) -> None:
    manager, app, ok = build(make_manager, make_app)
    async with client_for(app):
        await make_tasks(manager, ok, 2)
        bus = EventBus(queue_size=4)
        bus.bind(asyncio.get_running_loop())
        stream = stream_for(app, manager, bus=bus)
        async with collecting(stream) as messages:
            await connected(messages)
            for n in range(50):
                bus.publish(TaskEvent(f"task-{n}", "ok", "running"))
            await until(lambda: any(m.event == "resync" for m in messages), timeout=2)
        assert bus.subscriber_count == 0  # unsubscribed in finally


async def test_the_stream_ends_when_the_manager_shuts_down(make_manager, make_app, client_for) -> None:
    manager, app, _ = build(make_manager, make_app)
    async with client_for(app):
        stream = stream_for(app, manager)
        messages: list[Any] = []

        async def run() -> None:
            async for message in stream.events():
                messages.append(message)

        task = asyncio.create_task(run())
        await until(lambda: manager.events.subscriber_count == 1)
        manager.shutting_down.set()
        await asyncio.wait_for(task, timeout=5)
    assert manager.events.subscriber_count == 0
    assert [(m.comment, m.event) for m in messages] == [("taskflow live rows", None), (None, "rows")]
    assert "No tasks match." in messages[1].raw_data  # the snapshot of an empty table, then the end


async def test_events_route_is_an_event_stream(make_manager, make_app, client_for) -> None:
    manager, app, _ = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        manager.shutting_down.set()  # the stream then ends at once: httpx's ASGI transport buffers bodies
        response = await client.get("/tasks/dashboard/events", params={"status": "failed"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert "retry: 3000" in response.text
