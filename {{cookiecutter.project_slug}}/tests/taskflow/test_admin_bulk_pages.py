"""Bulk actions on the dashboard: tick rows (or keep the filter), confirm on a page, see the counts.

Plain forms through a logged-in session, as a browser without JavaScript sends them.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

import httpx
import pytest

from app.taskflow import TaskStatus

from .conftest import ADMIN, VIEWER, wait_for_status
from .test_admin_bulk import build, finished, plant


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url  # forms and pages: the JSON tests cover both databases


async def login(client: httpx.AsyncClient, credentials: tuple[str, str] = ADMIN) -> str:
    """Log in through the form; returns the dashboard's CSRF token."""
    response = await client.post("/tasks/login", data={"username": credentials[0], "password": credentials[1]})
    assert response.status_code == 303, response.text
    page = await client.get("/tasks/dashboard")
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def hidden(html: str, name: str) -> list[str]:
    return re.findall(rf'<input type="hidden" name="{name}" value="([^"]*)">', html)


async def status_of(manager: Any, task_id: str) -> str | None:
    row = await asyncio.to_thread(manager.store.get, task_id)
    return None if row is None else row.status


async def test_rows_have_checkboxes_for_the_bulk_form(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app) as client:
        await login(client)
        task_id = await finished(manager, tasks["ok"], TaskStatus.SUCCESS)
        page = (await client.get("/tasks/dashboard")).text
        empty = (await client.get("/tasks/dashboard", params={"status": "running"})).text
        await login(client, VIEWER)
        viewer = (await client.get("/tasks/dashboard")).text
    assert f'<input type="checkbox" name="ids" value="{task_id}" form="bulk-form"' in page
    assert '<form id="bulk-form" method="post" action="/tasks/dashboard/bulk/confirm"' in page
    assert '<td colspan="9">No tasks match.</td>' in empty
    assert 'name="ids"' not in viewer and "bulk-form" not in viewer and "/bulk/" not in viewer


async def test_selected_rows_are_confirmed_then_retried(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app) as client:
        token = await login(client)
        failed = [await finished(manager, tasks["boom"], TaskStatus.FAILED) for _ in range(2)]
        ok_id = await finished(manager, tasks["ok"], TaskStatus.SUCCESS)
        form = {"csrf_token": token, "action": "retry", "scope": "selected", "ids": [*failed, ok_id]}
        confirm = await client.post("/tasks/dashboard/bulk/confirm", data=form)
        nothing_yet = (await client.get("/tasks/audit", auth=ADMIN)).json()
        run = await client.post("/tasks/dashboard/bulk/run", data={**form, "ids": hidden(confirm.text, "ids")})
        audit = (await client.get("/tasks/audit", auth=ADMIN)).json()
    assert confirm.status_code == 200
    assert "<h1>Retry 2 tasks?</h1>" in confirm.text
    assert "1 skipped: not failed, cancelled or interrupted" in confirm.text
    assert hidden(confirm.text, "ids") == [*failed, ok_id] and token in hidden(confirm.text, "csrf_token")
    assert nothing_yet == []
    assert run.status_code == 200
    assert '<td class="count" data-outcome="retried">2</td>' in run.text
    assert '<td class="count" data-outcome="not_retryable">1</td>' in run.text
    assert sorted(entry["action"] for entry in audit) == ["bulk-retry", "retry", "retry"]


async def test_all_matching_the_filter_are_cancelled_after_confirming(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app) as client:
        token = await login(client)
        running = manager.enqueue(tasks["slow"])
        await wait_for_status(manager, running, TaskStatus.RUNNING)
        waiting = plant(manager, 2, status=TaskStatus.PENDING, age=timedelta(0), name="ok")
        page = (await client.get("/tasks/dashboard", params={"name": "ok"})).text
        form = {"csrf_token": token, "action": "cancel", "scope": "filter", "name": "ok"}
        confirm = await client.post("/tasks/dashboard/bulk/confirm", data=form)
        run = await client.post("/tasks/dashboard/bulk/run", data=form)
        still_running = await status_of(manager, running)
    # The table's "all matching" form carries the filter the table shows.
    assert '<input type="hidden" name="scope" value="filter">' in page
    assert '<input type="hidden" name="name" value="ok">' in page
    assert "<h1>Cancel 2 tasks?</h1>" in confirm.text and "<code>name=ok</code>" in confirm.text
    assert hidden(confirm.text, "name") == ["ok"]
    assert '<td class="count" data-outcome="cancelled">2</td>' in run.text
    assert [await status_of(manager, task_id) for task_id in waiting] == ["cancelled", "cancelled"]
    assert still_running == "running"  # not named "ok": left alone


async def test_delete_from_the_page_keeps_unfinished_tasks(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app) as client:
        token = await login(client)
        running = manager.enqueue(tasks["slow"])
        await wait_for_status(manager, running, TaskStatus.RUNNING)
        ok_id = await finished(manager, tasks["ok"], TaskStatus.SUCCESS)
        form = {"csrf_token": token, "action": "delete", "scope": "selected", "ids": [running, ok_id]}
        confirm = await client.post("/tasks/dashboard/bulk/confirm", data=form)
        run = await client.post("/tasks/dashboard/bulk/run", data=form)
        statuses = (await status_of(manager, ok_id), await status_of(manager, running))
    assert "<h1>Delete 1 task?</h1>" in confirm.text and "1 skipped: not finished" in confirm.text
    assert '<td class="count" data-outcome="deleted">1</td>' in run.text
    assert statuses == (None, "running")


async def test_purge_shows_how_many_before_deleting(make_manager, make_app, client_for) -> None:
    manager, app, _ = build(make_manager, make_app)
    old = plant(manager, 3, status=TaskStatus.SUCCESS, age=timedelta(days=10))
    (recent,) = plant(manager, 1, status=TaskStatus.SUCCESS, age=timedelta(hours=1))
    async with client_for(app) as client:
        token = await login(client)
        week = {"csrf_token": token, "older_than": "1w"}
        confirm = await client.post("/tasks/dashboard/bulk/purge/confirm", data=week)
        untouched = [await status_of(manager, task_id) for task_id in old]
        run = await client.post("/tasks/dashboard/bulk/purge", data=week)
        bad = await client.post("/tasks/dashboard/bulk/purge/confirm", data={**week, "older_than": "1 week"})
    assert "<p>3 tasks finished before" in confirm.text and hidden(confirm.text, "older_than") == ["1w"]
    assert untouched == ["success"] * 3
    assert '<strong class="count" data-outcome="deleted">3</strong>' in run.text
    assert [await status_of(manager, task_id) for task_id in old] == [None] * 3
    assert await status_of(manager, recent) == "success"
    assert bad.status_code == 422 and "older_than must be a positive age" in bad.text


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"action": "retry", "scope": "selected"}, "no task selected"),
        ({"action": "explode", "scope": "selected", "ids": ["x"]}, "unknown bulk action"),
        ({"action": "retry", "scope": "filter", "status": "exploded"}, "unknown status"),
    ],
)
async def test_bad_bulk_forms_are_refused_with_the_reason(make_manager, make_app, client_for, form, message) -> None:
    _, app, _ = build(make_manager, make_app)
    async with client_for(app) as client:
        token = await login(client)
        for path in ("/tasks/dashboard/bulk/confirm", "/tasks/dashboard/bulk/run"):
            response = await client.post(path, data={"csrf_token": token, **form})
            assert response.status_code == 422 and message in response.text, path


async def test_bulk_forms_without_the_csrf_token_change_nothing(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    old = plant(manager, 1, status=TaskStatus.SUCCESS, age=timedelta(days=10))
    async with client_for(app) as client:
        await login(client)
        failed = await finished(manager, tasks["boom"], TaskStatus.FAILED)
        selected = {"action": "delete", "scope": "selected", "ids": [failed]}
        refused = [
            await client.post("/tasks/dashboard/bulk/confirm", data=selected),
            await client.post("/tasks/dashboard/bulk/run", data=selected),
            await client.post("/tasks/dashboard/bulk/run", data={**selected, "csrf_token": "guess"}),
            await client.post("/tasks/dashboard/bulk/purge", data={"older_than": "1s"}),
        ]
        audit = (await client.get("/tasks/audit", auth=ADMIN)).json()
    assert [response.status_code for response in refused] == [403] * 4
    assert await status_of(manager, failed) == "failed" and await status_of(manager, old[0]) == "success"
    assert audit == []
