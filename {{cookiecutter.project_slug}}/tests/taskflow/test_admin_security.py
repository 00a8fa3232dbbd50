"""Admin security: one auth dependency over every route, roles, login session, CSRF and origin checks."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from app.taskflow import TaskStatus

from .conftest import ADMIN, VIEWER, wait_for_status

ADMIN_PATH = "/tasks"
PUBLIC = {("GET", "/tasks/login"), ("POST", "/tasks/login"), ("GET", "/tasks/login/style.css")}  # the login form itself


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url  # HTTP behaviour only: one engine is enough


def build(make_manager: Any, make_app: Any, **admin: Any) -> tuple[Any, Any, dict[str, Any]]:
    manager = make_manager()

    @manager.task(name="secret_task")
    def secret_task(token: str) -> None:
        raise RuntimeError(f"failed with {token}")

    app = make_app(manager, **admin)
    return manager, app, {"secret_task": secret_task}


def admin_routes(app: Any) -> list[tuple[str, str]]:
    routes = []
    for route in iter_route_contexts(app.routes):
        if route.path and route.path.startswith(ADMIN_PATH):
            routes.extend((method, route.path) for method in sorted(route.methods or ()) if method != "HEAD")
    return routes


def fill(path: str, task_id: str) -> str:
    return path.replace("{task_id}", task_id).replace("{filename}", "htmx.min.js")


async def failed_task(manager: Any, tasks: dict[str, Any]) -> str:
    task_id = manager.enqueue(tasks["secret_task"], kwargs={"token": "s3cr3t-value"})
    await wait_for_status(manager, task_id, TaskStatus.FAILED)
    return task_id


async def login(client: httpx.AsyncClient, credentials: tuple[str, str] = ADMIN) -> str:
    """Log in through the form; returns the page's CSRF token."""
    response = await client.post("/tasks/login", data={"username": credentials[0], "password": credentials[1]})
    assert response.status_code == 303, response.text
    page = await client.get("/tasks/dashboard")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, "the dashboard carries a CSRF token"
    return match.group(1)


async def test_every_admin_route_refuses_anonymous_requests(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    routes = admin_routes(app)
    assert ("GET", "/tasks/dashboard/events") in routes and ("GET", "/tasks/dashboard/static/{filename}") in routes
    async with client_for(app) as client:
        task_id = await failed_task(manager, tasks)
        for method, path in routes:
            if (method, path) in PUBLIC:
                continue
            for headers in (
                {},
                {"accept": "application/json"},
                {"accept": "text/event-stream"},
                {"HX-Request": "true"},
            ):
                response = await client.request(method, fill(path, task_id), headers=headers)
                assert response.status_code in (401, 403), (method, path, headers, response.status_code)
                assert task_id not in response.text and "s3cr3t" not in response.text
        login_page = await client.get("/tasks/login")
    assert login_page.status_code == 200
    assert task_id not in login_page.text and "secret_task" not in login_page.text


async def test_every_admin_page_redirects_browsers_to_login(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app) as client:
        task_id = await failed_task(manager, tasks)
        for method, path in admin_routes(app):
            if method != "GET" or (method, path) in PUBLIC:
                continue
            url = fill(path, task_id)
            response = await client.get(url, headers={"accept": "text/html,application/xhtml+xml"})
            assert response.status_code == 303, (path, response.status_code)
            assert response.headers["location"].startswith("/tasks/login?next=")
            assert task_id not in response.text


async def test_htmx_requests_without_a_session_are_sent_to_login(make_manager, make_app, client_for) -> None:
    _, app, _ = build(make_manager, make_app)
    async with client_for(app) as client:
        response = await client.get("/tasks/dashboard/partials/table", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/tasks/login"
    assert "WWW-Authenticate" not in response.headers  # no Basic dialog popping up in the browser


async def test_basic_credentials_work_for_the_json_api(make_manager, make_app, client_for) -> None:
    _, app, _ = build(make_manager, make_app)
    async with client_for(app) as client:
        ok = await client.get("/tasks", auth=ADMIN)
        wrong = await client.get("/tasks", auth=(ADMIN[0], "wrong"))
        unknown = await client.get("/tasks", auth=("nobody", ADMIN[1]))
    assert ok.status_code == 200
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Basic")


async def test_login_sets_a_hardened_session_cookie(make_manager, make_app, client_for) -> None:
    _, app, _ = build(make_manager, make_app)
    async with client_for(app) as client:
        response = await client.post(
            "/tasks/login", data={"username": ADMIN[0], "password": ADMIN[1], "next": "/tasks/dashboard/registry"}
        )
        page = await client.get("/tasks/dashboard")
    cookie = response.headers["set-cookie"].lower()
    assert response.status_code == 303 and response.headers["location"] == "/tasks/dashboard/registry"
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/tasks" in cookie
    assert "secure" not in cookie  # plain http here; see the https test
    assert page.status_code == 200 and ADMIN[0] in page.text


async def test_session_cookie_is_secure_behind_https(make_manager, make_app) -> None:
    _, app, _ = build(make_manager, make_app)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://admin.example") as client:
        response = await client.post("/tasks/login", data={"username": ADMIN[0], "password": ADMIN[1]})
    assert "secure" in response.headers["set-cookie"].lower()


async def test_login_with_a_wrong_password_is_refused(make_manager, make_app, client_for) -> None:
    _, app, _ = build(make_manager, make_app)
    async with client_for(app) as client:
        response = await client.post("/tasks/login", data={"username": ADMIN[0], "password": "nope"})
        after = await client.get("/tasks")
    assert response.status_code == 401 and "Wrong user name or password" in response.text
    assert "set-cookie" not in response.headers
    assert after.status_code == 401


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/x", "/elsewhere", "/tasks", "/tasks/../../x", "/tasks/%2e%2e/x"],
)
async def test_login_redirects_only_inside_the_admin(make_manager, make_app, client_for, target) -> None:
    _, app, _ = build(make_manager, make_app)
    async with client_for(app) as client:
        response = await client.post("/tasks/login", data={"username": ADMIN[0], "password": ADMIN[1], "next": target})
    assert response.headers["location"] == "/tasks/dashboard"


async def test_logout_ends_the_session(make_manager, make_app, client_for) -> None:
    _, app, _ = build(make_manager, make_app)
    async with client_for(app) as client:
        token = await login(client)
        response = await client.post("/tasks/logout", data={"csrf_token": token})
        after = await client.get("/tasks")
    assert response.status_code == 303 and response.headers["location"] == "/tasks/login"
    assert after.status_code == 401


async def test_session_ends_when_the_password_changes(make_manager, make_app, client_for) -> None:
    _, app, _ = build(make_manager, make_app)
    async with client_for(app) as client:
        await login(client)
        cookies = dict(client.cookies)
    manager = make_manager()
    app_after = make_app(manager, password="a-new-password")
    async with client_for(app_after, cookies=cookies) as client:
        response = await client.get("/tasks")
    assert response.status_code == 401


async def test_a_tampered_session_cookie_is_refused(make_manager, make_app, client_for) -> None:
    _, app, _ = build(make_manager, make_app)
    async with client_for(app) as client:
        await login(client, VIEWER)
        value = client.cookies["taskflow_session"]
        forged = value.replace(".", "X.", 1)
        client.cookies.clear()
        client.cookies.set("taskflow_session", forged, path="/tasks")
        response = await client.get("/tasks")
    assert response.status_code == 401


async def test_viewer_can_read_but_every_mutation_is_forbidden(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app) as client:
        task_id = await failed_task(manager, tasks)
        assert (await client.get(f"/tasks/{task_id}", auth=VIEWER)).status_code == 200
        posts = [path for method, path in admin_routes(app) if method == "POST" and ("POST", path) not in PUBLIC]
        posts.remove("/tasks/logout")  # logging oneself out is not a mutation of tasks
        assert len(posts) >= 6
        for path in posts:
            response = await client.post(fill(path, task_id), auth=VIEWER)
            assert response.status_code == 403, (path, response.status_code)
        token = await login(client, VIEWER)
        page_retry = await client.post(f"/tasks/dashboard/tasks/{task_id}/retry", data={"csrf_token": token})
        dashboard = await client.get("/tasks/dashboard")
    assert page_retry.status_code == 403
    assert "(read-only)" in dashboard.text and 'class="retry"' not in dashboard.text
    assert await _retries(manager, task_id) == []


async def _retries(manager: Any, task_id: str) -> list[str]:
    import asyncio

    detail = await asyncio.to_thread(manager.store.task_detail, task_id)
    return [] if detail is None else list(detail.retried_as)


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/page"},
    ],
)
async def test_cross_site_posts_are_refused(make_manager, make_app, client_for, headers) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app) as client:
        task_id = await failed_task(manager, tasks)
        api = await client.post(f"/tasks/{task_id}/retry", auth=ADMIN, headers=headers)
        token = await login(client)
        page = await client.post(f"/tasks/dashboard/tasks/{task_id}/retry", data={"csrf_token": token}, headers=headers)
        bulk = await client.post("/tasks/retry-failed", auth=ADMIN, headers=headers)
    assert api.status_code == page.status_code == bulk.status_code == 403
    assert await _retries(manager, task_id) == []


async def test_same_origin_posts_are_accepted(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app) as client:
        task_id = await failed_task(manager, tasks)
        headers = {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"}
        response = await client.post(f"/tasks/{task_id}/retry", auth=ADMIN, headers=headers)
    assert response.status_code == 202


async def test_trusted_origins_may_post(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app, trusted_origins=["https://admin.example"])
    async with client_for(app) as client:
        task_id = await failed_task(manager, tasks)
        response = await client.post(f"/tasks/{task_id}/retry", auth=ADMIN, headers={"Origin": "https://admin.example"})
    assert response.status_code == 202


async def test_session_posts_need_the_csrf_token(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app) as client:
        task_id = await failed_task(manager, tasks)
        token = await login(client)
        missing = await client.post(f"/tasks/{task_id}/retry")
        wrong = await client.post(f"/tasks/dashboard/tasks/{task_id}/retry", data={"csrf_token": "guess"})
        by_form = await client.post(f"/tasks/dashboard/tasks/{task_id}/retry", data={"csrf_token": token})
        other_id = await failed_task(manager, tasks)
        by_header = await client.post(
            f"/tasks/dashboard/tasks/{other_id}/retry", headers={"X-CSRF-Token": token, "HX-Request": "true"}
        )
    assert missing.status_code == wrong.status_code == 403
    assert by_form.status_code == 303 and by_form.headers["location"].startswith("/tasks/dashboard/tasks/")
    assert by_header.status_code == 204 and by_header.headers["HX-Location"].startswith("/tasks/dashboard/tasks/")


async def test_open_admin_works_without_credentials(make_manager, make_app, client_for) -> None:
    # The test client's Host is "testserver": listed, as a service reached under that name would.
    manager, app, tasks = build(make_manager, make_app, credentials=False, allowed_hosts=["testserver"])
    async with client_for(app) as client:
        task_id = await failed_task(manager, tasks)
        listed = await client.get("/tasks")
        login_page = await client.get("/tasks/login")
        page = await client.get("/tasks/dashboard")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        without_token = await client.post(f"/tasks/dashboard/tasks/{task_id}/retry")
        with_token = await client.post(f"/tasks/dashboard/tasks/{task_id}/retry", data={"csrf_token": token})
        cross_site = await client.post(f"/tasks/{task_id}/retry", headers={"Sec-Fetch-Site": "cross-site"})
    assert listed.status_code == 200 and listed.json()[0]["task_id"] == task_id
    assert login_page.status_code == 303  # nothing to log in to
    assert "open admin" in page.text
    assert without_token.status_code == 403  # the browser got a session nonce with the page
    assert with_token.status_code == 303
    assert cross_site.status_code == 403


async def test_static_files_are_allow_listed(make_manager, make_app, client_for) -> None:
    _, app, _ = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        htmx = await client.get("/tasks/dashboard/static/htmx.min.js")
        sse = await client.get("/tasks/dashboard/static/htmx-ext-sse.min.js")
        other = await client.get("/tasks/dashboard/static/README.md")
        escape = await client.get("/tasks/dashboard/static/..%2F__init__.py")
    assert htmx.status_code == sse.status_code == 200
    assert htmx.headers["content-type"].startswith("text/javascript")
    assert other.status_code == escape.status_code == 404


async def test_sessions_work_without_a_configured_secret_key(make_manager, make_app, client_for) -> None:
    _, app, _ = build(make_manager, make_app, secret_key=None)
    async with client_for(app) as client:
        await login(client)
        response = await client.get("/tasks")
    assert response.status_code == 200
