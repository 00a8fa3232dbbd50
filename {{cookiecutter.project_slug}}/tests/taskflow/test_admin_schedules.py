"""The admin's schedules: the page, the JSON list, and pause/resume (audited, guarded like every action).

Runs on SQLite and PostgreSQL (the `database_url` fixture).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx

from app.taskflow import TaskStatus

from .conftest import ADMIN, VIEWER, eventually


def build(make_manager: Any, make_app: Any) -> tuple[Any, Any, list[str]]:
    manager = make_manager()
    ran: list[str] = []

    @manager.schedule(every=0.1, name="heartbeat")
    async def heartbeat() -> None:
        ran.append("heartbeat")

    @manager.schedule(cron="0 3 * * *", timezone="Europe/Berlin", name="nightly <report>")
    async def nightly() -> None: ...

    return manager, make_app(manager), ran


async def login(client: httpx.AsyncClient) -> str:
    """Log in through the form; returns the schedules page's CSRF token."""
    response = await client.post("/tasks/login", data={"username": ADMIN[0], "password": ADMIN[1]})
    assert response.status_code == 303, response.text
    page = await client.get("/tasks/dashboard/schedules")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, "the schedules page carries a CSRF token"
    return match.group(1)


async def test_the_json_list_shows_each_schedule_with_its_last_outcome(make_manager, make_app, client_for) -> None:
    _manager, app, _ran = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:

        async def heartbeat_succeeded() -> bool:
            listed = (await client.get("/tasks/schedules")).json()
            return listed[0]["last_status"] == TaskStatus.SUCCESS

        await eventually(heartbeat_succeeded)
        listed = (await client.get("/tasks/schedules")).json()
    heartbeat, nightly = listed
    assert (heartbeat["name"], heartbeat["kind"], heartbeat["expression"], heartbeat["paused"]) == (
        "heartbeat",
        "every",
        "0.1",
        False,
    )
    assert heartbeat["last_task_id"] and heartbeat["last_run_at"]
    assert (nightly["kind"], nightly["expression"], nightly["timezone"]) == ("cron", "0 3 * * *", "Europe/Berlin")
    assert (nightly["last_run_at"], nightly["last_status"]) == (None, None)


async def test_the_page_shows_the_schedules_escaped_with_a_link_to_the_last_run(
    make_manager, make_app, client_for
) -> None:
    manager, app, ran = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        await eventually(lambda: len(ran) >= 1)

        async def listed_with_a_run() -> bool:
            return bool((await client.get("/tasks/schedules")).json()[0]["last_task_id"])

        await eventually(listed_with_a_run)
        await manager.pause_schedule("heartbeat")  # its last run stays the same from here on
        last_task_id = (await client.get("/tasks/schedules")).json()[0]["last_task_id"]
        page = await client.get("/tasks/dashboard/schedules")
        dashboard = await client.get("/tasks/dashboard")
    assert page.status_code == 200
    assert "nightly &lt;report&gt;" in page.text and "nightly <report>" not in page.text
    assert "<code>0 3 * * *</code> (Europe/Berlin)" in page.text
    assert f"/tasks/dashboard/tasks/{last_task_id}" in page.text
    assert 'href="/tasks/dashboard/schedules"' in dashboard.text  # in the navigation


async def test_pause_and_resume_through_the_api_are_audited(make_manager, make_app, client_for) -> None:
    _manager, app, ran = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        paused = await client.post("/tasks/schedules/heartbeat/pause")
        count_at_pause = ran.count("heartbeat")
        resumed = await client.post("/tasks/schedules/heartbeat/resume")
        await eventually(lambda: ran.count("heartbeat") > count_at_pause)
        audit = (await client.get("/tasks/audit")).json()
    assert (paused.status_code, paused.json()["paused"]) == (200, True)
    assert (resumed.status_code, resumed.json()["paused"]) == (200, False)
    assert [(entry["actor"], entry["action"], json.loads(entry["detail"])) for entry in reversed(audit)] == [
        ("admin", "pause-schedule", {"schedule": "heartbeat"}),
        ("admin", "resume-schedule", {"schedule": "heartbeat"}),
    ]


async def test_the_page_buttons_pause_and_resume_with_the_csrf_token(make_manager, make_app, client_for) -> None:
    _manager, app, _ran = build(make_manager, make_app)
    async with client_for(app) as client:
        token = await login(client)
        refused = await client.post("/tasks/dashboard/schedules/heartbeat/pause", data={"csrf_token": "guess"})
        still_active = (await client.get("/tasks/schedules")).json()[0]["paused"]
        paused = await client.post("/tasks/dashboard/schedules/heartbeat/pause", data={"csrf_token": token})
        page = await client.get("/tasks/dashboard/schedules")
        is_paused = (await client.get("/tasks/schedules")).json()[0]["paused"]
        await client.post("/tasks/dashboard/schedules/heartbeat/resume", data={"csrf_token": token})
        is_resumed = not (await client.get("/tasks/schedules")).json()[0]["paused"]
    assert refused.status_code == 403 and still_active is False
    assert paused.status_code == 303 and paused.headers["location"] == "/tasks/dashboard/schedules"
    assert is_paused and ">Resume</button>" in page.text
    assert is_resumed


async def test_a_viewer_sees_the_schedules_but_cannot_pause_them(make_manager, make_app, client_for) -> None:
    _manager, app, _ran = build(make_manager, make_app)
    async with client_for(app, auth=VIEWER) as client:
        page = await client.get("/tasks/dashboard/schedules")
        refused = await client.post("/tasks/schedules/heartbeat/pause")
        listed = (await client.get("/tasks/schedules")).json()
    assert page.status_code == 200 and ">Pause</button>" not in page.text
    assert refused.status_code == 403
    assert listed[0]["paused"] is False


async def test_an_unknown_schedule_is_a_404_naming_it(make_manager, make_app, client_for) -> None:
    manager, app, _ran = build(make_manager, make_app)
    async with client_for(app) as client:
        token = await login(client)
        api = await client.post("/tasks/schedules/nope/pause", headers={"X-CSRF-Token": token})
        page = await client.post("/tasks/dashboard/schedules/nope/resume", data={"csrf_token": token})
        audit = await asyncio.to_thread(lambda: manager.store.list_audit(limit=10))
    assert (api.status_code, api.json()["detail"]) == (404, "no schedule named 'nope'")
    assert page.status_code == 404 and "There is no schedule named" in page.text
    assert audit == []
