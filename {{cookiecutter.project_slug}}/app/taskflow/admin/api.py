"""The admin JSON API under /tasks (list, metrics, detail)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response

from ..models import TaskStatus
from ..store import TaskFilter, queries
from .schemas import Metrics, TaskDetail, TaskPublic

router = APIRouter()


def _admin(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.taskflow_admin


@router.get("", response_model=list[TaskPublic], name="taskflow_list")
async def list_tasks(
    request: Request,
    response: Response,
    status: Annotated[
        TaskStatus | None, Query(description="pending, running, success, failed, cancelled, interrupted")
    ] = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    q: Annotated[str | None, Query(max_length=200, description="text in the id, name or error")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[TaskPublic]:
    """Tasks, newest first. The total matching count is in the X-Total-Count header."""
    admin = _admin(request)
    task_filter = TaskFilter(status=status, name=name, since=admin.as_utc(since), until=admin.as_utc(until), text=q)
    rows, total = await asyncio.to_thread(admin.list_page, task_filter, limit, offset)
    response.headers["X-Total-Count"] = str(total)
    return [TaskPublic.from_row(row, show_arguments=admin.display_func_args) for row in rows]


@router.get("/metrics", response_model=Metrics, name="taskflow_metrics")
async def metrics(request: Request) -> Metrics:
    """Counts by status, success rate and average duration."""
    admin = _admin(request)
    counts, avg = await asyncio.to_thread(
        admin.task_manager.store.read, lambda c: (queries.status_counts(c), queries.average_duration(c))
    )
    finished = counts["success"] + counts["failed"]
    return Metrics(
        total=sum(counts.values()),
        **counts,
        success_rate=None if not finished else counts["success"] / finished,
        avg_duration_seconds=avg,
    )


@router.get("/{task_id}", response_model=TaskDetail, name="taskflow_detail")
async def task_detail(request: Request, task_id: str) -> TaskDetail:
    """One task with its attempts, logs, error, traceback, progress and result."""
    admin = _admin(request)
    store = admin.task_manager.store
    row, attempts = await asyncio.to_thread(
        store.read, lambda c: (queries.get_task(c, task_id), queries.list_attempts(c, task_id))
    )
    if row is None:
        raise HTTPException(status_code=404, detail=f"no task with id {task_id!r}")
    return TaskDetail.from_parts(row, attempts, show_arguments=admin.display_func_args)
