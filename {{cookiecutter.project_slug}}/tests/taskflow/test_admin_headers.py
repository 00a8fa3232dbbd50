"""Every admin response carries anti-framing, nosniff, a Referrer-Policy and a strict CSP;
no page has inline script or style (the policy would block it)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .conftest import ADMIN
from .test_admin_security import admin_routes, build, failed_task, fill, login


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url  # headers only: one engine is enough


def assert_hardened(response: Any, where: str) -> None:
    headers = response.headers
    policy = headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in policy, where
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy, where
    assert "style-src 'self'" in policy, where
    assert headers.get("x-frame-options") == "DENY", where
    assert headers.get("x-content-type-options") == "nosniff", where
    assert headers.get("referrer-policy") == "same-origin", where


INLINE = [
    re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I),  # a script element without src
    re.compile(r"<style\b", re.I),
    re.compile(r"\son[a-z]+\s*=", re.I),  # onclick=, onload=, ...
    re.compile(r"\sstyle\s*=", re.I),
    re.compile(r"\shx-on[:-]", re.I),  # htmx event handlers are evaluated script
    re.compile(r"javascript:", re.I),
]


async def test_every_admin_response_carries_the_security_headers(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app) as client:
        task_id = await failed_task(manager, tasks)
        for method, path in admin_routes(app):
            url = fill(path, task_id)
            if path.endswith("/events"):
                continue  # below: the stream must end first (httpx's ASGI transport buffers bodies)
            anonymous = await client.request(method, url)
            assert_hardened(anonymous, f"{method} {path} (anonymous, {anonymous.status_code})")
            as_admin = await client.request(method, url, auth=ADMIN)
            assert_hardened(as_admin, f"{method} {path} (admin, {as_admin.status_code})")
        missing = await client.get("/tasks/dashboard/no-such-page", auth=ADMIN)
        assert_hardened(missing, "an unknown admin path")
        manager.shutting_down.set()  # the event stream then ends after its first message
        stream = await client.get("/tasks/dashboard/events", auth=ADMIN)
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert_hardened(stream, "the event stream")
    outside = await _outside(app)
    assert "x-frame-options" not in outside.headers  # the rest of the service keeps its own choices


async def _outside(app: Any) -> Any:
    import httpx

    @app.get("/elsewhere")
    async def elsewhere() -> dict[str, str]:
        return {"ok": "yes"}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        return await client.get("/elsewhere")


async def test_pages_have_no_inline_script_or_style(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app) as client:
        task_id = await failed_task(manager, tasks)
        login_page = await client.get("/tasks/login")
        await login(client)
        pages = [login_page]
        for method, path in admin_routes(app):
            if method == "GET" and "{filename}" not in path and not path.endswith("/events"):
                response = await client.get(fill(path, task_id))
                if response.headers.get("content-type", "").startswith("text/html"):
                    pages.append(response)
    assert len(pages) >= 8
    for page in pages:
        for pattern in INLINE:
            match = pattern.search(page.text)
            assert match is None, (str(page.url), match and page.text[max(0, match.start() - 80) : match.end() + 80])


async def test_the_login_page_loads_its_stylesheet_without_credentials(make_manager, make_app, client_for) -> None:
    _, app, _ = build(make_manager, make_app)
    async with client_for(app) as client:
        page = await client.get("/tasks/login")
        href = re.search(r'<link rel="stylesheet" href="([^"]+)"', page.text)
        assert href is not None
        style = await client.get(href.group(1))
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    assert "font:" in style.text
