"""The admin JSON API under the admin path (default /tasks).

Fixed paths (/metrics, /audit, /registry, /retry-failed, ...) are declared before /{task_id}, so
they are never taken for a task id (the bulk actions' /bulk/... routes, in bulk_api.py, are
included before this router). Mutations depend on `require_actor` (role, origin, CSRF).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from ..manager import TaskNotFound
from ..metrics import prometheus_text
from ..models import TaskStatus
from ..schedules import ScheduleNotFound
from ..store import TaskFilter
from .auth import Principal, get_admin
from .bulk import MAX_BULK
from .filters import api_filter
from .guards import ActorDep
from .schemas import (
    ActionResult,
    AuditPublic,
    BulkRetryResult,
    Metrics,
    RegisteredTask,
    SchedulePublic,
    TaskDetail,
    TaskPublic,
)
from .service import ActionRefused, AdminService

router = APIRouter()

FilterDep = Annotated[TaskFilter, Depends(api_filter)]


def get_service(request: Request) -> AdminService:
    return get_admin(request).service


ServiceDep = Annotated[AdminService, Depends(get_service)]


def _not_found(task_id: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"no task with id {task_id!r}")


@router.get("", response_model=list[TaskPublic], name="taskflow_list")
async def list_tasks(
    request: Request,
    response: Response,
    service: ServiceDep,
    task_filter: FilterDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[TaskPublic]:
    """Tasks, newest first. The matching count is in X-Total-Count ("10000+" past the count cap)."""
    page = await service.list_page(task_filter, limit=limit, offset=offset)
    response.headers["X-Total-Count"] = page.total_label
    show = get_admin(request).display_func_args
    return [TaskPublic.from_row(row, show_arguments=show) for row in page.rows]


@router.get("/metrics", response_model=Metrics, name="taskflow_metrics")
async def metrics(service: ServiceDep) -> Metrics:
    """Counts by status, success rate, duration p50/p95 per task name and recent throughput."""
    return Metrics.from_snapshot(await service.metrics())


@router.get("/metrics/prometheus", name="taskflow_prometheus")
async def prometheus(request: Request) -> Response:
    """The same figures in the Prometheus text exposition format."""
    body = await asyncio.to_thread(prometheus_text, get_admin(request).prometheus)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/registry", response_model=list[RegisteredTask], name="taskflow_registry")
async def registry(service: ServiceDep) -> list[RegisteredTask]:
    """Registered tasks with their effective retry policy."""
    return [RegisteredTask.model_validate(entry) for entry in service.registry()]


@router.get("/audit", response_model=list[AuditPublic], name="taskflow_audit")
async def audit(
    service: ServiceDep,
    task_id: Annotated[str | None, Query(max_length=36)] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[AuditPublic]:
    """Admin actions (retry, cancel, bulk retry), newest first."""
    rows = await service.audit(limit=limit, offset=offset, task_id=task_id, actor=actor)
    return [AuditPublic.from_row(row) for row in rows]


@router.post("/retry-failed", response_model=BulkRetryResult, name="taskflow_retry_failed")
async def retry_failed(
    service: ServiceDep,
    principal: ActorDep,
    task_filter: FilterDep,
    limit: Annotated[int, Query(ge=1, le=MAX_BULK, description="retry at most this many")] = 100,
) -> BulkRetryResult:
    """Retry failed tasks matching the filter (status is implied) that were not retried yet."""
    if task_filter.status is not None and task_filter.status != TaskStatus.FAILED:
        raise HTTPException(status_code=422, detail="retry-failed only retries failed tasks; drop the status filter")
    done, refused = await service.retry_failed(principal, task_filter, limit=limit)
    return BulkRetryResult(
        retried=[ActionResult(task_id=old, outcome="retried", new_task_id=new) for old, new in done],
        failed=[{"task_id": old, "reason": reason} for old, reason in refused],
    )


@router.get("/schedules", response_model=list[SchedulePublic], name="taskflow_schedules")
async def schedules(service: ServiceDep) -> list[SchedulePublic]:
    """Periodic schedules by name, with their next and last due time and last outcome."""
    return [SchedulePublic.from_row(row) for row in await service.schedules()]


@router.post("/schedules/{name}/pause", response_model=SchedulePublic, name="taskflow_schedule_pause")
async def pause_schedule(service: ServiceDep, principal: ActorDep, name: str) -> SchedulePublic:
    """Stop firing this schedule on every instance until it is resumed."""
    return await _set_paused(service, principal, name, paused=True)


@router.post("/schedules/{name}/resume", response_model=SchedulePublic, name="taskflow_schedule_resume")
async def resume_schedule(service: ServiceDep, principal: ActorDep, name: str) -> SchedulePublic:
    """Fire this schedule again, from its next due time (those passed while paused do not run)."""
    return await _set_paused(service, principal, name, paused=False)


async def _set_paused(service: AdminService, principal: Principal, name: str, *, paused: bool) -> SchedulePublic:
    try:
        await service.pause_schedule(principal, name, paused=paused)
    except ScheduleNotFound:
        raise HTTPException(status_code=404, detail=f"no schedule named {name!r}") from None
    row = next(row for row in await service.schedules() if row.name == name)
    return SchedulePublic.from_row(row)


@router.get("/{task_id}", response_model=TaskDetail, name="taskflow_detail")
async def task_detail(request: Request, service: ServiceDep, task_id: str) -> TaskDetail:
    """One task with its attempts, logs, error, traceback, progress and result."""
    view = await service.task(task_id)
    if view is None:
        raise _not_found(task_id)
    return TaskDetail.from_parts(view.row, view.attempts, show_arguments=get_admin(request).display_func_args)


@router.post("/{task_id}/retry", response_model=ActionResult, status_code=202, name="taskflow_retry")
async def retry(service: ServiceDep, principal: ActorDep, task_id: str) -> ActionResult:
    """Run a failed, cancelled or interrupted task again, as a new task linked to this one."""
    try:
        new_id = await service.retry(principal, task_id)
    except TaskNotFound:
        raise _not_found(task_id) from None
    except ActionRefused as error:
        raise HTTPException(status_code=409, detail=str(error)) from None
    return ActionResult(task_id=task_id, outcome="retried", new_task_id=new_id)


@router.post("/{task_id}/cancel", response_model=ActionResult, status_code=202, name="taskflow_cancel")
async def cancel(service: ServiceDep, principal: ActorDep, task_id: str) -> ActionResult:
    """Cancel a pending task (it never runs) or a running one."""
    try:
        outcome = await service.cancel(principal, task_id)
    except TaskNotFound:
        raise _not_found(task_id) from None
    except ActionRefused as error:
        raise HTTPException(status_code=409, detail=str(error)) from None
    return ActionResult(task_id=task_id, outcome=outcome.value)
