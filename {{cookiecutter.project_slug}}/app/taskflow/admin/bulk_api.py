"""The bulk actions in the JSON API: POST /bulk/retry, /bulk/cancel, /bulk/delete and /bulk/purge.

Included before api.py's router, so /bulk/... is never taken for a task id. Same guard as every
mutation (`require_actor`: role, origin, CSRF for sessions); the logic is in bulk.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from ..models import TaskStatus
from ..options import PRIORITY_MAX, PRIORITY_MIN
from ..store import TaskFilter
from .api import ServiceDep
from .bulk import MAX_BULK, BulkAction, BulkActions, BulkInputError, BulkReport, Selection
from .filters import MAX_TEXT, as_utc
from .guards import ActorDep

router = APIRouter(prefix="/bulk")


class BulkFilter(BaseModel):
    """The list endpoint's filters; an unknown key is refused (a typo must not select everything)."""

    model_config = ConfigDict(extra="forbid")

    status: TaskStatus | None = None
    name: Annotated[str | None, Field(max_length=MAX_TEXT)] = None
    since: datetime | None = None
    until: datetime | None = None
    q: Annotated[str | None, Field(max_length=MAX_TEXT)] = None
    min_priority: Annotated[int | None, Field(ge=PRIORITY_MIN, le=PRIORITY_MAX)] = None

    def task_filter(self) -> TaskFilter:
        try:
            since, until = as_utc(self.since), as_utc(self.until)
        except ValueError as error:
            raise BulkInputError(f"filter: {error}; use a time between years 1 and 9999 in UTC") from None
        return TaskFilter(
            status=self.status,
            name=self.name or None,
            since=since,
            until=until,
            text=self.q or None,
            min_priority=self.min_priority,
        )


class BulkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[str] | None = Field(default=None, description=f"task ids, at most {MAX_BULK}")
    filter: BulkFilter | None = Field(default=None, description=f"the newest {MAX_BULK} matching tasks")

    def selection(self) -> Selection:
        if (self.ids is None) == (self.filter is None):
            raise BulkInputError(
                'send exactly one of "ids" (a list of task ids) or "filter" (the list endpoint\'s filters)'
            )
        if self.ids is not None:
            return Selection.of_ids(self.ids)
        assert self.filter is not None
        return Selection.of_filter(self.filter.task_filter())


class BulkTaskOutcome(BaseModel):
    task_id: str
    outcome: str
    new_task_id: str | None = None
    reason: str | None = None


class BulkResult(BaseModel):
    """What a bulk call did: a count per outcome, and each task's outcome."""

    action: str
    counts: dict[str, int]
    more_match: bool = Field(description=f"the filter matched more than {MAX_BULK} tasks: call again for the rest")
    tasks: list[BulkTaskOutcome]

    @classmethod
    def from_report(cls, report: BulkReport) -> BulkResult:
        return cls(
            action=report.action.value,
            counts=report.counts,
            more_match=report.more_match,
            tasks=[BulkTaskOutcome(**vars(task)) for task in report.tasks],
        )


class PurgeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    older_than: str | float = Field(description="seconds, or an age like 30m, 12h, 7d, 2w")


class PurgeResult(BaseModel):
    deleted: int
    cutoff: datetime
    more_remain: bool = Field(description=f"more than {MAX_BULK} tasks were old enough: call again for the rest")


def _unprocessable(error: BulkInputError) -> HTTPException:
    return HTTPException(status_code=422, detail=str(error))


async def _run(service: Any, principal: Any, action: BulkAction, body: BulkRequest) -> BulkResult:
    try:
        selection = body.selection()
    except BulkInputError as error:
        raise _unprocessable(error) from None
    return BulkResult.from_report(await BulkActions(service).run(principal, action, selection))


@router.post("/retry", response_model=BulkResult, name="taskflow_bulk_retry")
async def bulk_retry(service: ServiceDep, principal: ActorDep, body: BulkRequest) -> BulkResult:
    """Retry the chosen failed, cancelled or interrupted tasks (others are skipped, with the reason)."""
    return await _run(service, principal, BulkAction.RETRY, body)


@router.post("/cancel", response_model=BulkResult, name="taskflow_bulk_cancel")
async def bulk_cancel(service: ServiceDep, principal: ActorDep, body: BulkRequest) -> BulkResult:
    """Cancel the chosen pending or running tasks (finished ones are skipped)."""
    return await _run(service, principal, BulkAction.CANCEL, body)


@router.post("/delete", response_model=BulkResult, name="taskflow_bulk_delete")
async def bulk_delete(service: ServiceDep, principal: ActorDep, body: BulkRequest) -> BulkResult:
    """Delete the chosen finished tasks with their attempts; pending and running ones are never deleted."""
    return await _run(service, principal, BulkAction.DELETE, body)


@router.post("/purge", response_model=PurgeResult, name="taskflow_bulk_purge")
async def bulk_purge(service: ServiceDep, principal: ActorDep, body: PurgeRequest) -> PurgeResult:
    """Delete finished tasks older than `older_than`, oldest first, at most MAX_BULK per call."""
    try:
        report = await BulkActions(service).purge(principal, body.older_than)
    except BulkInputError as error:
        raise _unprocessable(error) from None
    return PurgeResult(deleted=report.deleted, cutoff=report.cutoff, more_remain=report.more_remain)
