"""A TaskAdmin without credentials (the reference API) still works, but accepts actions only from
this machine unless `allowed_hosts` says otherwise: no DNS-rebinding page and no other machine
can retry or cancel. The admin stays out of the OpenAPI schema unless asked."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from .test_admin_security import build, failed_task


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url  # HTTP behaviour only


def client(app: Any, *, host: str, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url=f"http://{host}")


async def test_open_admin_acts_only_for_loopback_hosts_from_loopback_clients(
    make_manager, make_app, client_for, caplog
) -> None:
    caplog.set_level(logging.WARNING, logger="taskflow.admin")
    manager, app, tasks = build(make_manager, make_app, credentials=False)
    async with client_for(app):
        task_id = await failed_task(manager, tasks)
        answers = {}
        for host, address in [
            ("127.0.0.1:8000", "127.0.0.1"),
            ("localhost:8000", "::1"),
            ("rebound.evil.example:8000", "127.0.0.1"),  # DNS rebinding: a local browser, a foreign name
            ("127.0.0.1:8000", "192.0.2.10"),  # another machine claiming a loopback Host
        ]:
            async with client(app, host=host, address=address) as http:
                read = await http.get("/tasks")
                answers[(host, address)] = (read.status_code, await http.post(f"/tasks/{task_id}/retry"))
    assert answers[("127.0.0.1:8000", "127.0.0.1")][1].status_code == 202
    assert answers[("localhost:8000", "::1")][1].status_code == 202
    rebound = answers[("rebound.evil.example:8000", "127.0.0.1")][1]
    assert rebound.status_code == 403 and "not Host 'rebound.evil.example'" in rebound.json()["detail"]
    remote = answers[("127.0.0.1:8000", "192.0.2.10")][1]
    assert remote.status_code == 403 and "only from this machine" in remote.json()["detail"]
    assert all(status == 200 for status, _ in answers.values())  # reading still works, as documented
    assert "NO credentials" in caplog.text and "actions only from this machine" in caplog.text


async def test_allowed_hosts_opens_actions_to_the_listed_names(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app, credentials=False, allowed_hosts=["ops.internal"])
    async with client_for(app):
        task_id = await failed_task(manager, tasks)
        async with client(app, host="ops.internal", address="10.1.2.3") as http:
            listed = await http.post(f"/tasks/{task_id}/retry")
        async with client(app, host="other.internal", address="10.1.2.3") as http:
            unlisted = await http.post(f"/tasks/{task_id}/retry")
    assert listed.status_code == 202
    assert unlisted.status_code == 403


async def test_credentials_make_the_host_rule_irrelevant(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app):
        task_id = await failed_task(manager, tasks)
        async with client(app, host="ops.example.com", address="192.0.2.10") as http:
            response = await http.post(f"/tasks/{task_id}/retry", auth=("admin", "admin-password"))
    assert response.status_code == 202


async def test_admin_routes_are_in_the_openapi_schema_only_when_asked(make_manager, make_app, client_for) -> None:
    _, hidden_app, _ = build(make_manager, make_app)
    _, listed_app, _ = build(make_manager, make_app, include_in_schema=True)
    async with client_for(hidden_app) as http:
        hidden = (await http.get("/openapi.json")).json().get("paths", {})
    async with client_for(listed_app) as http:
        listed = (await http.get("/openapi.json")).json()["paths"]
    assert not [path for path in hidden if path.startswith("/tasks")]
    assert "/tasks" in listed and "/tasks/dashboard" not in listed  # pages never, the JSON API when asked
