"""The dashboard's HTML: htmx contracts, escaping of task data, pages that work without JavaScript."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from sqlalchemy import insert

from app.taskflow import TaskStatus, current_task
from app.taskflow.models import new_task_row, utcnow
from app.taskflow.store.writes import TASKS

from .conftest import ADMIN, VIEWER, wait_for_status
from .sql import write_sql

XSS = "<script>alert('x')</script>"
XSS_ESCAPED = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url  # rendering only: one engine is enough


def build(make_manager: Any, make_app: Any, **admin: Any) -> tuple[Any, Any, dict[str, Any]]:
    manager = make_manager()

    @manager.task(name="ok")
    async def ok(label: str = "") -> dict[str, str]:
        current_task().progress(1, 4, "step one")
        return {"label": label}

    @manager.task(name="evil")
    def evil(payload: str) -> None:
        import logging

        logging.getLogger("tests.evil").warning("log line %s", payload)
        raise ValueError(payload)

    @manager.task(name=XSS)
    def evil_name() -> None:
        return None

    @manager.task(name="slow")
    async def slow() -> None:
        await asyncio.sleep(60)

    admin.setdefault("metrics_ttl", 0.0)
    app = make_app(manager, **admin)
    return manager, app, {"ok": ok, "evil": evil, "evil_name": evil_name, "slow": slow}


def without_our_scripts(html: str) -> str:
    """The page minus its own <script src=...> tags: what remains must hold no <script at all."""
    return re.sub(r'<script src="[^"]+" defer></script>', "", html)


async def test_dashboard_rows_have_stable_ids(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        ids = [manager.enqueue(tasks["ok"], kwargs={"label": str(n)}) for n in range(3)]
        for task_id in ids:
            await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
        page = await client.get("/tasks/dashboard")
        partial = await client.get("/tasks/dashboard/partials/table")
    for html in (page.text, partial.text):
        assert re.findall(r'<tr id="task-([0-9a-f-]+)"', html) == list(reversed(ids))
    assert '<tbody id="task-rows">' in partial.text and 'id="task-table"' in partial.text
    # The address bar gets the page's URL (reloadable), never the fragment's.
    assert partial.headers["HX-Replace-Url"] == "/tasks/dashboard"


async def test_partials_are_fragments_and_pages_are_documents(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        task_id = manager.enqueue(tasks["ok"])
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
        routes = [r.path for r in iter_route_contexts(app.routes) if r.path and "GET" in (r.methods or ())]
        partials = [path.replace("{task_id}", task_id) for path in routes if "/partials/" in path]
        pages = ["/tasks/dashboard", "/tasks/dashboard/metrics", "/tasks/dashboard/audit", "/tasks/dashboard/registry"]
        assert len(partials) >= 4
        for path in partials:
            response = await client.get(path, headers={"HX-Request": "true"})
            assert response.status_code == 200, path
            assert "<html" not in response.text and "<body" not in response.text, path
        for path in [*pages, f"/tasks/dashboard/tasks/{task_id}"]:
            response = await client.get(path)
            assert response.status_code == 200, path
            assert response.text.lstrip().startswith("<!doctype html>"), path
            assert "htmx.min.js" in response.text and "htmx-ext-sse.min.js" in response.text


async def test_task_data_is_escaped_everywhere(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app, display_func_args=True)
    async with client_for(app, auth=ADMIN) as client:
        evil_id = manager.enqueue(tasks["evil"], kwargs={"payload": XSS})
        named_id = manager.enqueue(tasks["evil_name"])
        await wait_for_status(manager, evil_id, TaskStatus.FAILED)
        await wait_for_status(manager, named_id, TaskStatus.SUCCESS)
        assert (await client.post(f"/tasks/{evil_id}/retry")).status_code == 202
        pages = {
            "dashboard": await client.get("/tasks/dashboard"),
            "table": await client.get("/tasks/dashboard/partials/table", params={"q": "<script>"}),
            "task": await client.get(f"/tasks/dashboard/tasks/{evil_id}"),
            "named": await client.get(f"/tasks/dashboard/tasks/{named_id}"),
            "registry": await client.get("/tasks/dashboard/registry"),
            "metrics": await client.get("/tasks/dashboard/partials/metrics"),
            "filtered": await client.get("/tasks/dashboard", params={"name": XSS, "q": XSS}),
        }
    for name, response in pages.items():
        assert response.status_code == 200, name
        html = without_our_scripts(response.text)
        assert "<script" not in html, name
    task_page = pages["task"].text
    assert task_page.count(XSS_ESCAPED) >= 4  # error, traceback, attempt error, log line
    assert "log line " + XSS_ESCAPED in task_page
    assert "&#34;payload&#34;: &#34;&lt;script&gt;" in task_page  # the arguments (JSON), escaped
    assert XSS_ESCAPED in pages["dashboard"].text and XSS_ESCAPED in pages["registry"].text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in pages["filtered"].text  # echoed filter values


async def test_arguments_are_hidden_unless_enabled(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        task_id = manager.enqueue(tasks["ok"], kwargs={"label": "private-value"})
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
        page = await client.get(f"/tasks/dashboard/tasks/{task_id}")
    assert "private-value" not in page.text.split("<h2>Result</h2>")[0]
    assert "Hidden: arguments may hold personal data" in page.text


async def test_task_page_shows_progress_result_and_attempts(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        task_id = manager.enqueue(tasks["ok"], kwargs={"label": "a"})
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
        page = (await client.get(f"/tasks/dashboard/tasks/{task_id}")).text
        missing = await client.get("/tasks/dashboard/tasks/00000000-0000-4000-8000-000000000000")
    assert '<progress class="progress" max="4.0" value="1.0"' in page
    assert "step one" in page
    assert "Attempt 1" in page and "&#34;label&#34;: &#34;a&#34;" in page  # the result
    assert missing.status_code == 404 and "No such task" in missing.text


async def test_task_page_and_api_list_an_attempt_cut_short_by_a_crash(make_manager, make_app, client_for) -> None:
    manager, app, _ = build(make_manager, make_app)
    began, task_id, gone = utcnow() - timedelta(minutes=2), str(uuid.uuid4()), "elsewhere:1:gone0000"
    row = new_task_row(id=task_id, name="ok", status=TaskStatus.RUNNING.value, persist=True, attempt=1)
    row |= {"arguments": '{"args": [], "kwargs": {}}'}
    row |= {"owner": gone, "started_at": began, "lease_expires_at": began, "created_at": began, "updated_at": began}
    write_sql(manager.store, lambda c: c.execute(insert(TASKS), [row]))
    async with client_for(app, auth=ADMIN) as client:
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
        page = (await client.get(f"/tasks/dashboard/tasks/{task_id}")).text
        detail = (await client.get(f"/tasks/{task_id}")).json()
        dashboard = (await client.get("/tasks/dashboard")).text
    assert [(a["number"], a["status"], a["owner"]) for a in detail["attempts"]] == [
        (1, "crashed", gone),
        (2, TaskStatus.SUCCESS.value, manager.owner),
    ]
    assert datetime.fromisoformat(detail["attempts"][0]["started_at"]) == began
    assert (detail["attempt"], detail["retries_used"], detail["recoveries"]) == (2, 0, 1)
    assert "2 started · no retries · 1 crash recovery" in page
    assert "2/1" not in dashboard and "1 crash</span>" in dashboard
    assert 'Attempt 1</strong> <span class="badge status-crashed">crashed</span>' in page
    assert "Attempt 2</strong>" in page and "InstanceLost" in page


async def test_progress_fragment_polls_only_while_active(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        task_id = manager.enqueue(tasks["slow"])
        await wait_for_status(manager, task_id, TaskStatus.RUNNING)
        url = f"/tasks/dashboard/tasks/{task_id}/partials/progress"
        running = await client.get(url, headers={"HX-Request": "true"})
        await manager.cancel(task_id)
        await wait_for_status(manager, task_id, TaskStatus.CANCELLED)
        final = await client.get(url, params={"was": "active"}, headers={"HX-Request": "true"})
    assert 'hx-trigger="every 1s"' in running.text and 'id="task-progress"' in running.text
    assert "hx-trigger" not in final.text and 'id="task-progress"' in final.text
    assert final.headers["HX-Refresh"] == "true"  # one reload shows the attempts and the outcome


async def test_pages_work_without_javascript(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        ok_ids = [manager.enqueue(tasks["ok"]) for _ in range(55)]
        evil_id = manager.enqueue(tasks["evil"], kwargs={"payload": "plain"})
        for task_id in [*ok_ids, evil_id]:
            await wait_for_status(manager, task_id, TaskStatus.SUCCESS, TaskStatus.FAILED)
        first = (await client.get("/tasks/dashboard")).text
        older_link = re.search(r'<a href="([^"]+)" hx-get="[^"]+"[^>]*>Older', first).group(1).replace("&amp;", "&")
        second = (await client.get(older_link)).text
        failed = (await client.get("/tasks/dashboard", params={"status": "failed"})).text
    # Plain forms and links: the filter form is a GET to the page, actions are POST forms.
    assert '<form method="get" action="/tasks/dashboard"' in first
    assert f'<form method="post" action="/tasks/dashboard/tasks/{evil_id}/retry"' in failed
    assert len(re.findall(r'<tr id="task-', first)) == 50 and "Older" in first
    assert older_link == "/tasks/dashboard?offset=50"
    assert len(re.findall(r'<tr id="task-', second)) == 6 and "Older" not in second and "Newer" in second
    assert re.findall(r'<tr id="task-([0-9a-f-]+)"', failed) == [evil_id]


async def test_invalid_filters_on_pages_are_shown_with_a_422(make_manager, make_app, client_for) -> None:
    _, app, _ = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        response = await client.get("/tasks/dashboard", params={"status": "exploded", "since": "soon", "offset": "x"})
    assert response.status_code == 422
    assert "unknown status &#39;exploded&#39;" in response.text and "since must be a date" in response.text


async def test_viewer_sees_no_action_buttons(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=VIEWER) as client:
        task_id = manager.enqueue(tasks["evil"], kwargs={"payload": "x"})
        await wait_for_status(manager, task_id, TaskStatus.FAILED)
        page = (await client.get(f"/tasks/dashboard/tasks/{task_id}")).text
        dashboard = (await client.get("/tasks/dashboard")).text
    for html in (page, dashboard):
        assert "/retry" not in html.replace("/retry-failed", "") and "(read-only)" in html


async def test_actions_confirm_before_posting(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        failed_id = manager.enqueue(tasks["evil"], kwargs={"payload": "x"})
        running_id = manager.enqueue(tasks["slow"])
        await wait_for_status(manager, failed_id, TaskStatus.FAILED)
        await wait_for_status(manager, running_id, TaskStatus.RUNNING)
        html = (await client.get("/tasks/dashboard")).text
    assert f'hx-post="/tasks/dashboard/tasks/{failed_id}/retry" hx-confirm="Retry task evil' in html
    assert f'hx-post="/tasks/dashboard/tasks/{running_id}/cancel" hx-confirm="Cancel task slow' in html


async def test_metrics_partial_draws_svg_charts(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        task_id = manager.enqueue(tasks["ok"])
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
        html = (await client.get("/tasks/dashboard/partials/metrics")).text
    assert html.count("<svg") == 2 and 'class="bar-success"' in html and 'class="bar-p50"' in html
    assert '<span class="count">1</span><span class="label">success</span>' in html


async def test_audit_page_lists_actions(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        task_id = manager.enqueue(tasks["evil"], kwargs={"payload": "x"})
        await wait_for_status(manager, task_id, TaskStatus.FAILED)
        await client.post(f"/tasks/{task_id}/retry")
        page = (await client.get("/tasks/dashboard/audit")).text
        filtered = (await client.get("/tasks/dashboard/partials/audit", params={"actor": "someone-else"})).text
    assert "<td>admin</td>" in page and "<td>retry</td>" in page and task_id[:8] in page
    assert "No admin actions recorded." in filtered


async def test_example_reports_page_is_behind_the_admin_login(make_manager, make_app, client_for) -> None:
    from app.api.pages import page as reports_page

    _, app, _ = build(make_manager, make_app, pages=[reports_page])
    async with client_for(app) as client:
        anonymous = await client.get("/tasks/dashboard/reports", headers={"accept": "text/html"})
        page = await client.get("/tasks/dashboard/reports", auth=ADMIN)
        dashboard = await client.get("/tasks/dashboard", auth=ADMIN)
    assert anonymous.status_code == 303
    assert page.status_code == 200 and "<h1>Reports</h1>" in page.text and "No reports yet." in page.text
    assert '<a href="/tasks/dashboard/reports">Reports</a>' in dashboard.text
