"""Example routes that enqueue tasks and return their ids."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, EmailStr

from app.taskflow import ManagedBackgroundTasks
from app.tasks import build_report, flaky, send_email

router = APIRouter(tags=["examples"])


# The routes take `ManagedBackgroundTasks`, FastAPI's `BackgroundTasks` with `add_task` typed as
# returning the task id, so a type checker sees the id the managed tasks return.


class Enqueued(BaseModel):
    task_id: str


@router.post("/signup", response_model=Enqueued, status_code=202)
def signup(email: Annotated[EmailStr, Query()], background_tasks: ManagedBackgroundTasks) -> Enqueued:
    """Sign a user up and send the welcome email in the background."""
    task_id = background_tasks.add_task(send_email, address=str(email))
    return Enqueued(task_id=task_id)


@router.post("/reports", response_model=Enqueued, status_code=202)
def create_report(seconds: Annotated[int, Query(ge=1, le=3600)], background_tasks: ManagedBackgroundTasks) -> Enqueued:
    """Build a report that takes `seconds`; follow its progress on the dashboard."""
    task_id = background_tasks.add_task(build_report, seconds=seconds)
    return Enqueued(task_id=task_id)


@router.post("/flaky", response_model=Enqueued, status_code=202)
def create_flaky(
    background_tasks: ManagedBackgroundTasks, failure_rate: Annotated[float, Query(ge=0.0, le=1.0)] = 0.5
) -> Enqueued:
    """Enqueue a task that fails `failure_rate` of the time and is retried."""
    task_id = background_tasks.add_task(flaky, failure_rate=failure_rate)
    return Enqueued(task_id=task_id)
