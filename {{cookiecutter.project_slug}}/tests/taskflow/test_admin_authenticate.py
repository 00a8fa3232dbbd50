"""TaskAdmin(authenticate=...): the admin behind the service's own authentication.

The service's dependency (here: a token header checked against a user table, with a dependency
of its own) decides who may use every admin route; the admin's own credentials are not used.
"""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from fastapi import Depends, Header, HTTPException, status

from app.taskflow import TaskStatus
from app.taskflow.admin import Principal, Role

from .conftest import ADMIN, wait_for_status

# The service's users: token -> (user name, role in the admin).
USERS = {"token-alice": ("alice", Role.ADMIN), "token-bob": ("bob", Role.VIEWER)}


def user_table() -> dict[str, tuple[str, Role]]:
    return USERS


async def service_user(
    users: Annotated[dict[str, tuple[str, Role]], Depends(user_table)],
    x_token: Annotated[str | None, Header()] = None,
) -> Principal:
    if x_token not in users:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="log in to the service first")
    username, role = users[x_token]
    return Principal(username, role)


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url  # who may see the admin does not depend on the database


def build(make_manager: Any, make_app: Any, **admin: Any) -> tuple[Any, Any, Any]:
    manager = make_manager()

    @manager.task
    def boom() -> None:
        raise ValueError("boom")

    return manager, make_app(manager, authenticate=service_user, **admin), boom


async def test_every_admin_route_asks_the_services_dependency(make_manager, make_app, client_for) -> None:
    _, app, _ = build(make_manager, make_app)
    routes = ["/tasks", "/tasks/registry", "/tasks/dashboard", "/tasks/dashboard/registry", "/tasks/metrics"]
    async with client_for(app) as client:
        anonymous = [await client.get(route, headers={"accept": "text/html"}) for route in routes]
        admin_password = [await client.get(route, auth=ADMIN) for route in routes]
        alice = [await client.get(route, headers={"x-token": "token-alice"}) for route in routes]
    assert [response.status_code for response in anonymous] == [401] * len(routes)
    assert anonymous[0].json() == {"detail": "log in to the service first"}
    assert [response.status_code for response in admin_password] == [401] * len(routes)
    assert [response.status_code for response in alice] == [200] * len(routes)
    assert "alice" in alice[2].text


async def test_actions_are_recorded_as_the_services_user_and_need_its_role(make_manager, make_app, client_for) -> None:
    manager, app, boom = build(make_manager, make_app)
    async with client_for(app) as client:
        task_id = manager.enqueue(boom)
        await wait_for_status(manager, task_id, TaskStatus.FAILED)
        refused = await client.post(f"/tasks/{task_id}/retry", headers={"x-token": "token-bob"})
        retried = await client.post(f"/tasks/{task_id}/retry", headers={"x-token": "token-alice"})
        audit = (await client.get("/tasks/audit", headers={"x-token": "token-bob"})).json()
    assert refused.status_code == 403 and "read-only" in refused.json()["detail"]
    assert retried.status_code == 202
    assert [(entry["actor"], entry["action"]) for entry in audit] == [("alice", "retry")]


async def test_an_admin_without_credentials_of_its_own_is_not_open(
    make_manager, make_app, client_for, caplog: pytest.LogCaptureFixture
) -> None:
    manager, app, boom = build(make_manager, make_app, credentials=False)
    async with client_for(app) as client:
        anonymous = await client.get("/tasks")
        task_id = manager.enqueue(boom)
        await wait_for_status(manager, task_id, TaskStatus.FAILED)
        # Host "testserver" is not a loopback name: an open admin would refuse this action.
        retried = await client.post(f"/tasks/{task_id}/retry", headers={"x-token": "token-alice"})
    assert anonymous.status_code == 401
    assert retried.status_code == 202
    assert "has NO credentials" not in caplog.text
