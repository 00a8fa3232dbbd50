"""Logout ends the session on every instance, and failed logins are limited per user and per address.

Both are kept in the task database, so each test also checks a second instance sharing it (SQLite
file and PostgreSQL).
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from app.taskflow.admin import LoginLimit

from .conftest import ADMIN, VIEWER
from .test_admin_security import login

LIMIT = LoginLimit(per_user=3, per_address=5, window=300)


def two_instances(make_manager: Any, make_app: Any, **admin: Any) -> tuple[Any, Any]:
    """Two apps on one database with the same secret key, like two processes of one service."""
    return make_app(make_manager(), **admin), make_app(make_manager(), **admin)


async def test_logout_ends_the_session_on_every_instance(make_manager, make_app, client_for) -> None:
    first, second = two_instances(make_manager, make_app)
    async with client_for(first) as client:
        token = await login(client)
        cookies = dict(client.cookies)
        assert (await client.get("/tasks")).status_code == 200
        response = await client.post("/tasks/logout", data={"csrf_token": token})
    assert response.status_code == 303
    for app in (first, second):
        async with client_for(app, cookies=cookies) as replay:  # the cookie copied before logout
            assert (await replay.get("/tasks")).status_code == 401


async def test_logout_from_another_site_or_without_the_token_is_refused(make_manager, make_app, client_for) -> None:
    app = make_app(make_manager())
    async with client_for(app) as client:
        token = await login(client)
        cross_site = await client.post(
            "/tasks/logout", data={"csrf_token": token}, headers={"origin": "http://evil.example"}
        )
        fetch_cross_site = await client.post(
            "/tasks/logout", data={"csrf_token": token}, headers={"sec-fetch-site": "cross-site"}
        )
        no_token = await client.post("/tasks/logout")
        wrong_token = await client.post("/tasks/logout", data={"csrf_token": "forged"})
        still_in = await client.get("/tasks")
    assert [cross_site.status_code, fetch_cross_site.status_code, no_token.status_code, wrong_token.status_code] == [
        403,
        403,
        403,
        403,
    ]
    assert still_in.status_code == 200


async def test_form_logins_are_limited_per_user_even_with_the_right_password(
    make_manager, make_app, client_for, caplog
) -> None:
    app = make_app(make_manager(), login_limit=LIMIT)
    caplog.set_level(logging.WARNING, logger="taskflow.admin")
    async with client_for(app) as client:
        wrong = [
            await client.post("/tasks/login", data={"username": ADMIN[0], "password": f"guess-{n}"}) for n in range(3)
        ]
        right = await client.post("/tasks/login", data={"username": ADMIN[0], "password": ADMIN[1]})
        other_user = await client.post("/tasks/login", data={"username": VIEWER[0], "password": VIEWER[1]})
    assert [r.status_code for r in wrong] == [401, 401, 401]
    assert right.status_code == 429 and "set-cookie" not in right.headers
    assert 1 <= int(right.headers["Retry-After"]) <= 300
    assert "Too many failed logins" in right.text
    assert other_user.status_code == 303  # the per-user limit is not a lock-out of everyone
    assert "failed login for user 'admin'" in caplog.text
    assert "too many failed logins" in caplog.text


async def test_basic_logins_are_limited_across_instances(make_manager, make_app, client_for) -> None:
    first, second = two_instances(make_manager, make_app, login_limit=LIMIT)
    async with client_for(first) as client:
        wrong = [(await client.get("/tasks", auth=(ADMIN[0], f"guess-{n}"))).status_code for n in range(3)]
    async with client_for(second) as client:
        right = await client.get("/tasks", auth=ADMIN)
        form = await client.post("/tasks/login", data={"username": ADMIN[0], "password": ADMIN[1]})
    assert wrong == [401, 401, 401]
    assert right.status_code == 429 and int(right.headers["Retry-After"]) >= 1
    assert "too many failed logins" in right.json()["detail"]
    assert form.status_code == 429


async def test_logins_are_limited_per_client_address_across_user_names(make_manager, make_app, client_for) -> None:
    app = make_app(make_manager(), login_limit=LIMIT)
    async with client_for(app) as client:
        guesses = [(await client.get("/tasks", auth=(f"user-{n}", "guess"))).status_code for n in range(5)]
        viewer = await client.get("/tasks", auth=VIEWER)
    other_address = httpx.ASGITransport(app=app, client=("192.0.2.7", 1234))
    async with httpx.AsyncClient(transport=other_address, base_url="http://testserver") as elsewhere:
        viewer_elsewhere = await elsewhere.get("/tasks", auth=VIEWER)
    assert guesses == [401] * 5
    assert viewer.status_code == 429
    assert viewer_elsewhere.status_code == 200


async def test_a_limit_ends_with_its_window(make_manager, make_app, client_for) -> None:
    from .conftest import eventually

    app = make_app(make_manager(), login_limit=LoginLimit(per_user=1, per_address=10, window=1.0))
    async with client_for(app) as client:
        assert (await client.get("/tasks", auth=(ADMIN[0], "guess"))).status_code == 401
        assert (await client.get("/tasks", auth=ADMIN)).status_code == 429

        async def allowed_again() -> bool:
            return (await client.get("/tasks", auth=ADMIN)).status_code == 200

        await eventually(allowed_again, timeout=20)
        # A new window starts from zero: one more wrong guess is a 401, not a 429.
        assert (await client.get("/tasks", auth=(ADMIN[0], "guess"))).status_code == 401


def test_a_login_limit_must_allow_something() -> None:
    with pytest.raises(ValueError, match="per_user >= 1"):
        LoginLimit(per_user=0)
