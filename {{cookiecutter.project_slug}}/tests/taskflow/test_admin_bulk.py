"""Bulk actions in the JSON API: retry, cancel and delete by ids or filter, purge by age.

Runs on SQLite and PostgreSQL (the `database_url` fixture). The dashboard's forms for the same
actions are in test_admin_bulk_pages.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import insert

from app.taskflow import TaskStatus
from app.taskflow.admin.bulk import MAX_BULK
from app.taskflow.models import new_task_row, utcnow
from app.taskflow.store.writes import TASKS

from .conftest import ADMIN, wait_for_status
from .sql import write_sql

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def build(make_manager: Any, make_app: Any, **admin: Any) -> tuple[Any, Any, dict[str, Any]]:
    manager = make_manager()

    @manager.task(name="ok")
    async def ok() -> None:
        return None

    @manager.task(name="boom", retries=1)
    def boom() -> None:
        raise ValueError("broken")

    @manager.task(name="slow")
    async def slow() -> None:
        await asyncio.sleep(60)

    admin.setdefault("metrics_ttl", 0.0)
    return manager, make_app(manager, **admin), {"ok": ok, "boom": boom, "slow": slow}


def plant(manager: Any, count: int, *, status: TaskStatus, age: timedelta, name: str = "ok") -> list[str]:
    """`count` rows of tasks created and (if final) finished `age` ago, written straight to the table."""
    at = utcnow() - age
    rows = []
    for _ in range(count):
        row = new_task_row(id=str(uuid.uuid4()), name=name, status=status.value, created_at=at)
        if status.is_active:
            # Persisted and due tomorrow: it waits, and no recovery takes it for an orphan.
            row |= {"persist": True, "next_run_at": utcnow() + timedelta(days=1)}
        else:
            row |= {"started_at": at, "finished_at": at}
        rows.append(row)
    write_sql(manager.store, lambda c: c.execute(insert(TASKS), rows))
    return [row["id"] for row in rows]


async def finished(manager: Any, task: Any, status: TaskStatus) -> str:
    task_id = manager.enqueue(task)
    await wait_for_status(manager, task_id, status)
    return task_id


async def audit_of(client: httpx.AsyncClient, action: str) -> list[dict[str, Any]]:
    entries = (await client.get("/tasks/audit", params={"limit": 500})).json()
    return [json.loads(entry["detail"]) for entry in entries if entry["action"] == action]


async def test_bulk_retry_by_ids_retries_what_it_can_and_says_why_not(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        failed = [await finished(manager, tasks["boom"], TaskStatus.FAILED) for _ in range(2)]
        ok_id = await finished(manager, tasks["ok"], TaskStatus.SUCCESS)
        response = await client.post("/tasks/bulk/retry", json={"ids": [*failed, ok_id, UNKNOWN, failed[0]]})
        audit = await audit_of(client, "bulk-retry")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["counts"] == {"retried": 2, "not_retryable": 1, "not_found": 1}
    by_id = {task["task_id"]: task for task in result["tasks"]}
    assert by_id[ok_id]["reason"] == "the task is success"
    for task_id in failed:
        new_id = by_id[task_id]["new_task_id"]
        assert (await asyncio.to_thread(manager.store.get, new_id)).retry_of == task_id
    summary = {"ids": 4, "first_ids": [*failed, ok_id, UNKNOWN], "counts": result["counts"], "more_match": False}
    assert audit == [summary]


async def test_bulk_cancel_by_filter_cancels_only_active_tasks(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        running = manager.enqueue(tasks["slow"])
        await wait_for_status(manager, running, TaskStatus.RUNNING)
        (waiting,) = plant(manager, 1, status=TaskStatus.PENDING, age=timedelta(0), name="slow")
        done = await finished(manager, tasks["ok"], TaskStatus.SUCCESS)
        response = await client.post("/tasks/bulk/cancel", json={"filter": {}})
        await wait_for_status(manager, running, TaskStatus.CANCELLED)
        audit = await audit_of(client, "bulk-cancel")
    assert response.status_code == 200, response.text
    outcomes = {task["task_id"]: task["outcome"] for task in response.json()["tasks"]}
    assert outcomes == {running: "cancelling", waiting: "cancelled"}
    assert (await asyncio.to_thread(manager.store.get, waiting)).status == TaskStatus.CANCELLED
    assert (await asyncio.to_thread(manager.store.get, done)).status == TaskStatus.SUCCESS
    assert audit[0]["filter"] == {} and audit[0]["counts"] == {"cancelling": 1, "cancelled": 1}


async def test_bulk_delete_never_deletes_unfinished_tasks(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        running = manager.enqueue(tasks["slow"])
        await wait_for_status(manager, running, TaskStatus.RUNNING)
        (waiting,) = plant(manager, 1, status=TaskStatus.PENDING, age=timedelta(0))
        failed = await finished(manager, tasks["boom"], TaskStatus.FAILED)
        ok_id = await finished(manager, tasks["ok"], TaskStatus.SUCCESS)
        assert len(await asyncio.to_thread(manager.store.attempts, failed)) == 2
        by_ids = await client.post("/tasks/bulk/delete", json={"ids": [running, waiting, failed]})
        by_filter = await client.post("/tasks/bulk/delete", json={"filter": {}})
        listed = {task["task_id"] for task in (await client.get("/tasks")).json()}
    assert by_ids.json()["counts"] == {"deleted": 1, "not_finished": 2}
    assert by_filter.json()["counts"] == {"deleted": 1}
    assert [task["task_id"] for task in by_filter.json()["tasks"]] == [ok_id]
    assert listed == {running, waiting}
    assert await asyncio.to_thread(manager.store.attempts, failed) == []  # its attempts went with it


async def test_bulk_by_filter_takes_at_most_the_limit_and_says_more_match(make_manager, make_app, client_for) -> None:
    manager, app, _ = build(make_manager, make_app)
    plant(manager, MAX_BULK + 2, status=TaskStatus.SUCCESS, age=timedelta(hours=1))
    async with client_for(app, auth=ADMIN) as client:
        first = (await client.post("/tasks/bulk/delete", json={"filter": {"status": "success"}})).json()
        second = (await client.post("/tasks/bulk/delete", json={"filter": {"status": "success", "name": "ok"}})).json()
        audit = await audit_of(client, "bulk-delete")
    assert (first["counts"], first["more_match"]) == ({"deleted": MAX_BULK}, True)
    assert (second["counts"], second["more_match"]) == ({"deleted": 2}, False)
    assert [entry["filter"] for entry in audit] == [{"status": "success", "name": "ok"}, {"status": "success"}]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, 'send exactly one of "ids"'),
        ({"ids": [UNKNOWN], "filter": {}}, 'send exactly one of "ids"'),
        ({"ids": []}, "no task selected"),
        ({"ids": [str(n) for n in range(MAX_BULK + 1)]}, f"at most {MAX_BULK} per call"),
        ({"ids": ["x" * 37]}, "is not a task id"),
        ({"ids": ["a\x00b"]}, "is not a task id"),
        ({"filter": {"name": "a\x00b"}}, "NUL"),
        ({"filter": {"stauts": "failed"}}, "stauts"),
        ({"filter": {"status": "exploded"}}, "status"),
        ({"filter": {"since": "0001-01-01T00:00:00+01:00"}}, "between years 1 and 9999"),
    ],
)
async def test_bad_bulk_selections_are_refused_with_a_422_saying_why(
    make_manager, make_app, client_for, body, message
) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        failed = await finished(manager, tasks["boom"], TaskStatus.FAILED)
        response = await client.post("/tasks/bulk/retry", json=body)
        audit = (await client.get("/tasks/audit")).json()
    assert response.status_code == 422
    assert message in str(response.json()["detail"])
    assert audit == [] and (await asyncio.to_thread(manager.store.get, failed)).status == TaskStatus.FAILED


async def test_purge_deletes_old_finished_tasks_a_limited_batch_per_call(make_manager, make_app, client_for) -> None:
    manager, app, _ = build(make_manager, make_app)
    old = plant(manager, MAX_BULK + 3, status=TaskStatus.SUCCESS, age=timedelta(days=8))
    (old_pending,) = plant(manager, 1, status=TaskStatus.PENDING, age=timedelta(days=8))
    (recent,) = plant(manager, 1, status=TaskStatus.FAILED, age=timedelta(days=1))
    async with client_for(app, auth=ADMIN) as client:
        first = (await client.post("/tasks/bulk/purge", json={"older_than": "7d"})).json()
        second = (await client.post("/tasks/bulk/purge", json={"older_than": 7 * 86400})).json()
        left = {task["task_id"] for task in (await client.get("/tasks")).json()}
        audit = await audit_of(client, "purge")
    assert (first["deleted"], first["more_remain"]) == (MAX_BULK, True)
    assert (second["deleted"], second["more_remain"]) == (3, False)
    assert left == {old_pending, recent} and old[0] not in left
    assert [(entry["deleted"], entry["more"], entry["via"]) for entry in audit] == [
        (3, False, "admin"),
        (MAX_BULK, True, "admin"),
    ]


@pytest.mark.parametrize("older_than", ["soon", "0", -5, "7x", "", 10**12, None])
async def test_purge_refuses_an_unreadable_age(make_manager, make_app, client_for, older_than) -> None:
    manager, app, _ = build(make_manager, make_app)
    plant(manager, 1, status=TaskStatus.SUCCESS, age=timedelta(days=30))
    async with client_for(app, auth=ADMIN) as client:
        response = await client.post("/tasks/bulk/purge", json={"older_than": older_than})
        left = (await client.get("/tasks")).json()
    assert response.status_code == 422
    assert "older_than" in str(response.json()["detail"])
    assert len(left) == 1


async def test_bulk_calls_from_a_session_need_the_csrf_token(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app) as client:
        failed = await finished(manager, tasks["boom"], TaskStatus.FAILED)
        login = await client.post("/tasks/login", data={"username": ADMIN[0], "password": ADMIN[1]})
        assert login.status_code == 303
        page = (await client.get("/tasks/dashboard")).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        refused = [
            await client.post("/tasks/bulk/retry", json={"ids": [failed]}),
            await client.post("/tasks/bulk/delete", json={"ids": [failed]}, headers={"X-CSRF-Token": "guess"}),
            await client.post("/tasks/bulk/purge", json={"older_than": "1s"}),
        ]
        still = await asyncio.to_thread(manager.store.get, failed)
        retried_before = list((await asyncio.to_thread(manager.store.task_detail, failed)).retried_as)
        accepted = await client.post("/tasks/bulk/retry", json={"ids": [failed]}, headers={"X-CSRF-Token": token})
    assert [response.status_code for response in refused] == [403, 403, 403]
    assert still is not None and retried_before == []
    assert accepted.status_code == 200 and accepted.json()["counts"] == {"retried": 1}


async def test_bulk_paths_are_not_taken_for_task_ids(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        await finished(manager, tasks["boom"], TaskStatus.FAILED)
        for path in ("/tasks/bulk/retry", "/tasks/bulk/cancel", "/tasks/bulk/delete"):
            response = await client.post(path, json={"ids": [UNKNOWN]})
            assert response.status_code == 200 and response.json()["counts"] == {"not_found": 1}, path
