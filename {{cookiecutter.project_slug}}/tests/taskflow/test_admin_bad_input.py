"""Bad input never makes the admin answer 5xx, on SQLite and PostgreSQL.

The routes are walked from the app (a route added later is covered without touching this test);
each query parameter, form field and path parameter gets every value of a fixed list of hostile
ones: times out of range, huge numbers, NUL, bytes that are not UTF-8, ids of any length.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from app.taskflow.admin import LoginLimit

from .conftest import ADMIN
from .test_admin_security import build, failed_task

# (label, value already percent-encoded for a URL or a form body)
HOSTILE = [
    ("early time, east of UTC", quote("0001-01-01T00:00:00+01:00", safe="")),
    ("late time, west of UTC", quote("9999-12-31T23:59:59-01:00", safe="")),
    ("time past year 9999", "10000-01-01T00%3A00%3A00"),
    ("huge number", "99999999999999999999999"),
    ("huge negative number", "-99999999999999999999999"),
    ("float overflow", "1e999"),
    ("not a number", "NaN"),
    ("NUL", "%00"),
    ("NUL inside", "a%00b"),
    ("not UTF-8", "%FF%FE"),
    ("lone surrogate as UTF-8", "%ED%A0%80"),
    ("empty", ""),
    ("one character", "x"),
    ("37 characters", "x" * 37),
    ("4000 characters", "x" * 4000),
    ("path-like", quote("../../etc/passwd", safe="")),
]

# Parameters the pages read from the query string without declaring them, besides the declared ones.
KNOWN_PARAMETERS = {
    "status",
    "name",
    "since",
    "until",
    "q",
    "offset",
    "limit",
    "actor",
    "task_id",
    "was",
    "next",
    "username",
    "password",
    "csrf_token",
}


def admin_routes(app: Any) -> list[tuple[str, APIRoute]]:
    routes: list[tuple[str, APIRoute]] = []
    for context in iter_route_contexts(app.routes):
        route = getattr(context, "route", context)
        path = getattr(context, "path", None) or getattr(route, "path", "")
        if path.startswith("/tasks"):
            routes.extend((method, context) for method in sorted(getattr(context, "methods", None) or ()))
    # The event stream last: it only ends once the manager is shutting down.
    return sorted((r for r in routes if r[0] != "HEAD"), key=lambda item: item[1].path.endswith("/events"))


def declared_parameters(route: Any) -> set[str]:
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return set()
    names: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        names.update(param.alias for param in current.query_params)
        names.update(param.alias for param in current.body_params)
        stack.extend(current.dependencies)
    return names


def path_with(path: str, existing_id: str, **override: str) -> str:
    values = {"task_id": existing_id, "filename": "htmx.min.js", **override}
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


async def send(client: httpx.AsyncClient, method: str, url: str, *, form: str | None = None) -> httpx.Response:
    headers = {"accept": "text/html"}
    if form is not None:
        headers["content-type"] = "application/x-www-form-urlencoded"
    return await client.request(
        method, url, content=form.encode("ascii") if form is not None else None, headers=headers, auth=ADMIN
    )


async def test_no_hostile_value_makes_any_admin_route_fail_with_5xx(make_manager, make_app, client_for) -> None:
    # No login limit in the way: hundreds of the requests below are failed logins.
    manager, app, tasks = build(make_manager, make_app, login_limit=LoginLimit(per_user=10**6, per_address=10**6))
    failures: list[str] = []
    checked = 0
    async with client_for(app) as client:
        task_id = await failed_task(manager, tasks)
        for method, route in admin_routes(app):
            path = route.path
            if path.endswith("/events"):
                manager.shutting_down.set()  # each stream then ends after its first message
            declared = sorted(declared_parameters(route))
            path_parameters = [name for name in ("task_id", "filename") if "{" + name + "}" in path]
            base = path_with(path, task_id)
            for label, value in HOSTILE:
                attempts = [
                    (f"path {name}", path_with(path, task_id, **{name: value}), None) for name in path_parameters
                ]
                # Every parameter at once (pages report each bad field, so none hides another)...
                every = "&".join(f"{name}={value}" for name in sorted(KNOWN_PARAMETERS | set(declared)))
                attempts.append(("every query parameter", f"{base}?{every}", None))
                if method == "POST":
                    attempts.append(("every form field", base, every))
                # ...and each declared one alone (validation may stop at the first bad one).
                attempts.extend((f"query {name}", f"{base}?{name}={value}", None) for name in declared)
                for where, url, form in attempts:
                    if where.startswith("path") and not value:
                        continue  # an empty path segment is another route
                    checked += 1
                    try:
                        response = await send(client, method, url, form=form)
                    except Exception as error:  # the app raised through the transport: a 500 in production
                        failures.append(f"{method} {path} {where}={label}: raised {error!r}")
                        continue
                    if response.status_code >= 500:
                        failures.append(f"{method} {path} {where}={label}: {response.status_code}")
    assert checked > 500
    assert not failures, "\n".join(failures[:40]) + f"\n({len(failures)} in all)"


async def test_a_nul_in_a_multipart_form_is_a_422(make_manager, make_app, client_for) -> None:
    _, app, _ = build(make_manager, make_app)
    async with client_for(app) as client:
        response = await client.post(
            "/tasks/dashboard/retry-failed", files={"q": (None, "a\x00b"), "name": (None, "x")}, auth=ADMIN
        )
    assert response.status_code == 422 and "q contains a NUL character" in response.text


@pytest.mark.parametrize(
    ("query", "message", "routes"),
    [
        ("since=0001-01-01T00%3A00%3A00%2B01%3A00", "since: 0001-01-01T00:00:00+01:00 is out of range", "all"),
        ("until=9999-12-31T23%3A59%3A59-01%3A00", "until: 9999-12-31T23:59:59-01:00 is out of range", "all"),
        ("q=a%00b", "NUL character", "all"),
        ("name=%FF", "not valid UTF-8", "all"),
        ("offset=99999999999999999999999", "offset", "api"),  # pages clamp it to their last page
    ],
)
async def test_bad_values_get_a_4xx_naming_what_was_wrong(
    make_manager, make_app, client_for, query, message, routes
) -> None:
    manager, app, _ = build(make_manager, make_app)
    urls = ["/tasks"]
    if routes == "all":
        urls += ["/tasks/dashboard", "/tasks/dashboard/partials/table", "/tasks/dashboard/events"]
    async with client_for(app) as client:
        for url in urls:
            response = await client.get(f"{url}?{query}", auth=ADMIN)
            assert 400 <= response.status_code < 500, (url, response.status_code, response.text[:300])
            assert message in response.text, (url, response.text[:300])
        manager.shutting_down.set()  # the stream then ends after its first message
        clamped = await client.get("/tasks/dashboard/events?offset=99999999999999999999999", auth=ADMIN)
    assert clamped.status_code == 200
