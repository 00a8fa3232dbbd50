"""The dashboard's HTML routes: pages, their fragments (for htmx) and the form actions.

Pages and fragments have separate URLs (`.../partials/...`), so no URL serves two shapes and no
`Vary: HX-Request` is needed. Each pair is registered from one helper with one context builder.
Actions answer htmx with `HX-Location` and plain forms (JavaScript off) with a 303 redirect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..manager import TaskNotFound
from ..schedules import ScheduleNotFound
from .api import ServiceDep, get_service
from .auth import Principal, PrincipalDep, get_admin
from .bulk import MAX_BULK
from .filters import FilterForm
from .guards import ActorDep
from .service import ActionRefused, AdminService
from .views import (
    audit_context,
    dashboard_context,
    metrics_context,
    registry_context,
    schedules_context,
    task_context,
)

router = APIRouter(prefix="/dashboard", default_response_class=HTMLResponse)

Builder = Callable[[Request, AdminService], Awaitable[dict[str, Any]]]


def render(
    request: Request, principal: Principal, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    return get_admin(request).renderer.render(request, template, context, principal=principal, status_code=status_code)


def _status(context: dict[str, Any]) -> int:
    """422 when the filter form had bad values (the page still shows, with the messages)."""
    form = context.get("form")
    return 422 if isinstance(form, FilterForm) and form.errors else 200


def page_and_partial(path: str, page_name: str, builder: Builder, page: str, partial: tuple[str, str] | None) -> None:
    """Register `GET path` (the page) and, if given, its fragment route on one context builder.

    `partial` is (fragment name, template): the fragment is served at `/partials/<name>`.
    """

    async def page_route(request: Request, principal: PrincipalDep, service: ServiceDep) -> HTMLResponse:
        context = await builder(request, service)
        return render(request, principal, page, context, status_code=_status(context))

    router.add_api_route(path, page_route, methods=["GET"], name=page_name)
    if partial is not None:
        fragment, template = partial

        async def partial_route(request: Request, principal: PrincipalDep, service: ServiceDep) -> HTMLResponse:
            context = await builder(request, service)
            response = render(request, principal, template, context, status_code=_status(context))
            if "page_url" in context:
                # The address bar shows the page (reloadable), never the fragment; replace, not push:
                # a live resync fetches this fragment too and must not add history entries.
                response.headers["HX-Replace-Url"] = context["page_url"]
            return response

        router.add_api_route(
            f"/partials/{fragment}", partial_route, methods=["GET"], name=f"taskflow_partial_{fragment}"
        )


page_and_partial(
    "", "taskflow_dashboard", dashboard_context, "dashboard.html", ("table", "partials/dashboard_table.html")
)
page_and_partial(
    "/metrics", "taskflow_page_metrics", metrics_context, "metrics.html", ("metrics", "partials/dashboard_metrics.html")
)
page_and_partial("/audit", "taskflow_page_audit", audit_context, "audit.html", ("audit", "partials/audit_table.html"))
page_and_partial("/registry", "taskflow_page_registry", registry_context, "registry.html", None)
page_and_partial("/schedules", "taskflow_page_schedules", schedules_context, "schedules.html", None)


async def _task_or_404(request: Request, principal: Principal, service: AdminService, task_id: str) -> Any:
    context = await task_context(request, service, task_id)
    if context is None:
        return render(request, principal, "not_found.html", {"task_id": task_id}, status_code=404)
    return context


@router.get("/tasks/{task_id}", name="taskflow_page_task")
async def task_page(request: Request, principal: PrincipalDep, service: ServiceDep, task_id: str) -> Response:
    context = await _task_or_404(request, principal, service, task_id)
    if isinstance(context, Response):
        return context
    return render(request, principal, "task.html", context)


@router.get("/tasks/{task_id}/partials/progress", name="taskflow_partial_progress")
async def task_progress(request: Request, principal: PrincipalDep, service: ServiceDep, task_id: str) -> Response:
    """The self-polling progress fragment; once the task is final it asks for one full reload."""
    context = await _task_or_404(request, principal, service, task_id)
    if isinstance(context, Response):
        return context
    response = render(request, principal, "partials/task_progress.html", context)
    if not context["active"] and request.query_params.get("was") == "active":
        response.headers["HX-Refresh"] = "true"  # attempts, result and error appeared: show them
    return response


def _go(request: Request, url: str) -> Response:
    if "HX-Request" in request.headers:
        return Response(status_code=204, headers={"HX-Location": url})
    return RedirectResponse(url, status_code=303)


def _task_url(request: Request, task_id: str) -> str:
    return str(request.url_for("taskflow_page_task", task_id=task_id).path)


def _refused(request: Request, principal: Principal, message: str, status_code: int) -> HTMLResponse:
    return render(request, principal, "refused.html", {"message": message}, status_code=status_code)


@router.post("/tasks/{task_id}/retry", name="taskflow_page_retry")
async def retry_action(request: Request, principal: ActorDep, service: ServiceDep, task_id: str) -> Response:
    try:
        new_id = await service.retry(principal, task_id)
    except TaskNotFound:
        return _refused(request, principal, f"There is no task {task_id}.", 404)
    except ActionRefused as error:
        return _refused(request, principal, str(error), 409)
    return _go(request, _task_url(request, new_id))


@router.post("/tasks/{task_id}/cancel", name="taskflow_page_cancel")
async def cancel_action(request: Request, principal: ActorDep, service: ServiceDep, task_id: str) -> Response:
    try:
        await service.cancel(principal, task_id)
    except TaskNotFound:
        return _refused(request, principal, f"There is no task {task_id}.", 404)
    except ActionRefused as error:
        return _refused(request, principal, str(error), 409)
    return _go(request, _task_url(request, task_id))


@router.post("/retry-failed", name="taskflow_page_retry_failed")
async def retry_failed_action(
    request: Request, principal: ActorDep, service: Annotated[AdminService, Depends(get_service)]
) -> Response:
    form = FilterForm.parse(dict((await request.form()).items()))  # type: ignore[arg-type]
    if form.errors:
        return _refused(request, principal, "; ".join(form.errors), 422)
    # The new tasks show up as pending on the dashboard this redirects to.
    await service.retry_failed(principal, form.task_filter, limit=min(MAX_BULK, 100))
    url = request.url_for("taskflow_dashboard").include_query_params(**{**form.query(), "status": "pending"})
    return _go(request, f"{url.path}?{url.query}")


@router.post("/schedules/{name}/pause", name="taskflow_page_schedule_pause")
async def pause_schedule_action(request: Request, principal: ActorDep, service: ServiceDep, name: str) -> Response:
    return await _set_paused(request, principal, service, name, paused=True)


@router.post("/schedules/{name}/resume", name="taskflow_page_schedule_resume")
async def resume_schedule_action(request: Request, principal: ActorDep, service: ServiceDep, name: str) -> Response:
    return await _set_paused(request, principal, service, name, paused=False)


async def _set_paused(
    request: Request, principal: Principal, service: AdminService, name: str, *, paused: bool
) -> Response:
    try:
        await service.pause_schedule(principal, name, paused=paused)
    except ScheduleNotFound:
        return _refused(request, principal, f"There is no schedule named {name!r}.", 404)
    return _go(request, str(request.url_for("taskflow_page_schedules").path))
