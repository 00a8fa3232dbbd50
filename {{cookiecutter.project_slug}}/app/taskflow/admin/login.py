"""The login form and logout. The login form is the one admin route reachable without credentials.

It shows no task data; a successful login sets the signed session cookie and redirects (303) to
`next` when that is a path inside the admin, else to the dashboard.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from .auth import ANONYMOUS, PrincipalDep, TooManyLogins, check_login, get_admin
from .guards import check_csrf, check_same_origin

public = APIRouter()  # included WITHOUT the auth dependency: only the login form lives here
router = APIRouter()  # logout: behind the auth dependency like everything else


def _safe_next(request: Request, target: str | None) -> str:
    admin = get_admin(request)
    # Only paths inside the admin: no open redirect to another site ("//evil", "https://...") and no
    # dot segments, which the browser would resolve to a path outside the admin ("/tasks/../x").
    path = (target or "").split("?", 1)[0]
    segments = path.lower().split("/")
    if (
        target
        and target.startswith(admin.path + "/")
        and not target.startswith("//")
        and "\\" not in target
        and not any(segment in {".", ".."} or "%2e" in segment or "%2f" in segment for segment in segments)
    ):
        return target
    return str(request.url_for("taskflow_dashboard").path)


def _form(request: Request, *, error: str | None, status_code: int, username: str = "") -> HTMLResponse:
    admin = get_admin(request)
    context = {"error": error, "username": username, "next": request.query_params.get("next", "")}
    return admin.renderer.render(request, "login.html", context, principal=ANONYMOUS, status_code=status_code)


@public.get("/login", response_class=HTMLResponse, name="taskflow_login", include_in_schema=False)
async def login_form(request: Request) -> Response:
    if get_admin(request).credentials.open:
        return RedirectResponse(_safe_next(request, request.query_params.get("next")), status_code=303)
    return _form(request, error=None, status_code=200)


@public.post("/login", response_class=HTMLResponse, include_in_schema=False)
async def login(
    request: Request,
    username: Annotated[str, Form(max_length=200)],
    password: Annotated[str, Form(max_length=500)],
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    check_same_origin(request, get_admin(request).trusted_origins)  # no login CSRF from other sites
    admin = get_admin(request)
    try:
        principal = await check_login(request, admin, username, password)
    except TooManyLogins as limited:
        response = _form(
            request,
            error=f"Too many failed logins. Try again in {limited.retry_after} seconds.",
            status_code=429,
            username=username,
        )
        response.headers["Retry-After"] = str(limited.retry_after)
        return response
    if principal is None:
        return _form(request, error="Wrong user name or password.", status_code=401, username=username)
    redirect = RedirectResponse(_safe_next(request, next), status_code=303)
    admin.sessions.issue(request, redirect, username=principal.username, password=password)
    return redirect


@router.post("/logout", name="taskflow_logout", include_in_schema=False)
async def logout(request: Request, principal: PrincipalDep) -> Response:
    """Ends the session on every instance (not only this browser's cookie); same checks as an action."""
    await check_csrf(request, principal)
    admin = get_admin(request)
    if principal.session_id:
        await admin.revocations.revoke(principal.session_id, max_age=admin.sessions.max_age)
    response = RedirectResponse(str(request.url_for("taskflow_login").path), status_code=303)
    admin.sessions.clear(response)
    return response
