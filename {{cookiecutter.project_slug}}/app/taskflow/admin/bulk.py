"""Bulk actions of the admin: retry, cancel or delete chosen tasks (by id or by filter), and
purge finished tasks older than an age. The JSON API (bulk_api.py) and the dashboard
(bulk_pages.py) both call `BulkActions`; each call is limited to MAX_BULK tasks and audited
once with its counts (retry and cancel also write their usual entry per task).
"""

from __future__ import annotations

import asyncio
import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..ages import parse_age
from ..manager import TaskNotFound
from ..models import ACTIVE_STATUSES, TERMINAL_STATUSES, TaskStatus, utcnow
from ..retention import CHUNK
from ..store import TaskFilter
from .auth import Principal
from .service import ActionRefused, AdminService, describe_filter

# Tasks one bulk call acts on at most: a call stays a few seconds, whatever it selects.
MAX_BULK = 1000
MAX_ID_LENGTH = 36  # the task id column's length


class BulkAction(enum.StrEnum):
    RETRY = "retry"
    CANCEL = "cancel"
    DELETE = "delete"


# The statuses each action can act on: a filter selects only these, ids in others are skipped.
RETRYABLE = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.INTERRUPTED})
ACTS_ON = {
    BulkAction.RETRY: RETRYABLE,
    BulkAction.CANCEL: ACTIVE_STATUSES,
    BulkAction.DELETE: TERMINAL_STATUSES,
}
# The outcome of an id whose task is in another status.
SKIPPED_AS = {
    BulkAction.RETRY: "not_retryable",
    BulkAction.CANCEL: "already_finished",
    BulkAction.DELETE: "not_finished",
}
NOT_FOUND = "not_found"


class BulkInputError(ValueError):
    """A selection or age the caller must fix (422); the message says how."""


@dataclass(frozen=True)
class Selection:
    """Which tasks a bulk action is for: these ids, or those matching a filter (newest first)."""

    ids: tuple[str, ...] | None = None
    task_filter: TaskFilter | None = None

    @classmethod
    def of_ids(cls, ids: Sequence[str]) -> Selection:
        unique = tuple(dict.fromkeys(ids))
        if not unique:
            raise BulkInputError("no task selected: give at least one task id")
        if len(unique) > MAX_BULK:
            raise BulkInputError(
                f"{len(unique)} task ids given; at most {MAX_BULK} per call: split them into several calls"
            )
        for task_id in unique:
            if not task_id or len(task_id) > MAX_ID_LENGTH or "\x00" in task_id:
                raise BulkInputError(f"{task_id[:40]!r} is not a task id (1 to {MAX_ID_LENGTH} characters, no NUL)")
        return cls(ids=unique)

    @classmethod
    def of_filter(cls, task_filter: TaskFilter) -> Selection:
        for value in (task_filter.name, task_filter.text):
            if value is not None and "\x00" in value:
                raise BulkInputError("the filter contains a NUL character; remove it")
        return cls(task_filter=task_filter)

    def describe(self) -> dict[str, Any]:
        """What the audit entry records of the selection."""
        if self.ids is not None:
            return {"ids": len(self.ids), "first_ids": list(self.ids[:20])}
        return {"filter": describe_filter(self.task_filter or TaskFilter())}


@dataclass(frozen=True)
class TaskOutcome:
    task_id: str
    outcome: str  # retried, cancelled, cancelling, deleted, or why it was skipped
    new_task_id: str | None = None
    reason: str | None = None


@dataclass
class BulkReport:
    action: BulkAction
    tasks: list[TaskOutcome] = field(default_factory=list)
    more_match: bool = False  # a filter matched more tasks than one call takes

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(task.outcome for task in self.tasks))


@dataclass(frozen=True)
class Plan:
    """What a bulk call would do: the ids it acts on, those it skips and why."""

    action: BulkAction
    selection: Selection
    eligible: list[str]
    skipped: list[TaskOutcome]
    more_match: bool

    @property
    def selected(self) -> int:
        return len(self.eligible) + len(self.skipped)

    @property
    def skipped_counts(self) -> dict[str, int]:
        return dict(Counter(task.outcome for task in self.skipped))


@dataclass(frozen=True)
class PurgePlan:
    older_than: str
    cutoff: datetime
    count: int  # finished tasks before the cutoff, counted up to the admin's count cap
    exact: bool

    @property
    def count_label(self) -> str:
        return str(self.count) if self.exact else f"{self.count}+"


@dataclass(frozen=True)
class PurgeReport:
    older_than: str
    cutoff: datetime
    deleted: int
    more_remain: bool


def purge_cutoff(older_than: str | float) -> datetime:
    try:
        age: timedelta = parse_age(older_than)
    except ValueError as error:
        raise BulkInputError(f"older_than {error}") from None
    return utcnow() - age


class BulkActions:
    """Bulk actions over the admin's service: its audited retry and cancel, the store's deletes."""

    def __init__(self, service: AdminService) -> None:
        self.service = service
        self.manager = service.manager

    async def plan(self, action: BulkAction, selection: Selection) -> Plan:
        """The ids the action would act on now (at most MAX_BULK) and those it would skip."""
        # Tasks this instance holds for its next write become rows first, so they can be found.
        await self.manager.flush()
        store = self.manager.store
        if selection.ids is None:
            task_filter = selection.task_filter or TaskFilter()
            found = await asyncio.to_thread(
                lambda: store.ids_matching(task_filter, limit=MAX_BULK + 1, statuses=ACTS_ON[action])
            )
            return Plan(action, selection, found[:MAX_BULK], [], more_match=len(found) > MAX_BULK)
        rows = await asyncio.to_thread(store.summaries, list(selection.ids))
        status_of = {row.id: row.status for row in rows}
        eligible: list[str] = []
        skipped: list[TaskOutcome] = []
        acts_on = {status.value for status in ACTS_ON[action]}
        for task_id in selection.ids:
            status = status_of.get(task_id)
            if status is None:
                skipped.append(TaskOutcome(task_id, NOT_FOUND, reason="no such task"))
            elif status not in acts_on:
                skipped.append(TaskOutcome(task_id, SKIPPED_AS[action], reason=f"the task is {status}"))
            else:
                eligible.append(task_id)
        return Plan(action, selection, eligible, skipped, more_match=False)

    async def run(self, principal: Principal, action: BulkAction, selection: Selection) -> BulkReport:
        plan = await self.plan(action, selection)
        report = BulkReport(action, list(plan.skipped), plan.more_match)
        if action is BulkAction.DELETE:
            report.tasks += await self._delete(plan.eligible)
        else:
            for task_id in plan.eligible:
                report.tasks.append(await self._one(principal, action, task_id))
        detail = {**selection.describe(), "counts": report.counts, "more_match": report.more_match}
        await self.service.audit_action(principal, f"bulk-{action.value}", detail)
        self.service.insights.invalidate()
        return report

    async def _one(self, principal: Principal, action: BulkAction, task_id: str) -> TaskOutcome:
        """Retry or cancel one task the way the single action does (and audited as it is)."""
        try:
            if action is BulkAction.RETRY:
                new_id = await self.service.retry(principal, task_id, detail="bulk")
                return TaskOutcome(task_id, "retried", new_task_id=new_id)
            outcome = await self.service.cancel(principal, task_id)
            return TaskOutcome(task_id, outcome.value)
        except TaskNotFound:
            return TaskOutcome(task_id, NOT_FOUND, reason="no such task")
        except ActionRefused as error:
            return TaskOutcome(task_id, SKIPPED_AS[action], reason=str(error))

    async def _delete(self, task_ids: list[str]) -> list[TaskOutcome]:
        store = self.manager.store
        deleted = await asyncio.to_thread(store.delete_finished, task_ids)
        if deleted == len(task_ids):
            return [TaskOutcome(task_id, "deleted") for task_id in task_ids]
        # Fewer went than were finished a moment ago: some changed, or another call deleted them.
        left = {row.id for row in await asyncio.to_thread(store.summaries, task_ids)}
        return [
            TaskOutcome(task_id, "not_finished", reason="the task changed meanwhile")
            if task_id in left
            else TaskOutcome(task_id, "deleted")
            for task_id in task_ids
        ]

    async def plan_purge(self, older_than: str) -> PurgePlan:
        cutoff = purge_cutoff(older_than)
        store = self.manager.store
        cap = self.service.count_cap
        count, exact = await asyncio.to_thread(lambda: store.count_finished_before(cutoff, cap=cap))
        return PurgePlan(older_than, cutoff, count, exact)

    async def purge(self, principal: Principal, older_than: str | float) -> PurgeReport:
        """Delete up to MAX_BULK finished tasks older than the age, oldest first, a chunk per transaction."""
        cutoff = purge_cutoff(older_than)
        store = self.manager.store
        deleted = 0
        while deleted < MAX_BULK:
            want = min(CHUNK, MAX_BULK - deleted)
            went = await asyncio.to_thread(store.delete_finished_before, cutoff, limit=want)
            deleted += went
            if went < want:
                break
        more = False
        if deleted == MAX_BULK:
            more = (await asyncio.to_thread(lambda: store.count_finished_before(cutoff, cap=1)))[0] > 0
        detail = {"older_than": str(older_than), "cutoff": cutoff.isoformat(), "deleted": deleted, "more": more}
        await self.service.audit_action(principal, "purge", {**detail, "via": "admin"})
        self.service.insights.invalidate()
        return PurgeReport(str(older_than), cutoff, deleted, more)
