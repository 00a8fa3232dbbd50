"""What the admin does, apart from HTTP: reads for lists and pages, and audited actions.

Routes (JSON and HTML) stay thin and call these; every blocking store call runs in a thread.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..manager import CancelOutcome, TaskNotFound, TaskNotRetryable
from ..metrics import Insights, MetricsSnapshot
from ..models import TaskStatus, utcnow
from ..rates import Usage
from ..store import TaskFilter
from .auth import Principal
from .waiting import Waiting, waiting_reason

if TYPE_CHECKING:
    from ..manager import TaskManager

# A list row, a fragment and the event stream show task summaries (store.queries.SUMMARY_COLUMNS):
# never the big, caller-controlled text columns, so a page costs the same whatever the tasks
# were given or returned. The task page reads the whole row.
AUDIT_ON_TASK_PAGE = 50


class ActionRefused(Exception):
    """An action that cannot be done to this task in its current state (409)."""


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    total: int
    exact: bool  # False when the count stopped at the cap
    limit: int
    offset: int
    has_more: bool

    @property
    def total_label(self) -> str:
        return str(self.total) if self.exact else f"{self.total}+"


@dataclass(frozen=True)
class TaskView:
    row: Any
    attempts: list[Any]
    retried_as: list[str]
    audit: list[Any]
    # Why it has not started, for a PENDING task (admin/waiting.py).
    waiting: Waiting | None = None


@dataclass(frozen=True)
class CurrentAttempt:
    """The task's latest attempt when it has no row of its own (running, or a first attempt that
    simply succeeded: the runner skips that row to halve the writes). Same fields as TaskAttempt."""

    number: int
    status: str
    owner: str | None
    started_at: Any
    finished_at: Any
    duration: float | None
    error_type: str | None
    error_message: str | None
    traceback: str | None
    logs: str | None = None


def with_current_attempt(row: Any, attempts: list[Any]) -> list[Any]:
    if row.attempt < 1 or any(attempt.number == row.attempt for attempt in attempts):
        return attempts
    duration = None
    if row.started_at is not None and row.finished_at is not None:
        duration = max(0.0, (row.finished_at - row.started_at).total_seconds())
    current = CurrentAttempt(
        number=row.attempt,
        status=row.status,
        owner=row.owner,
        started_at=row.started_at,
        finished_at=row.finished_at,
        duration=duration,
        error_type=row.error_type,
        error_message=row.error_message,
        traceback=row.traceback,
    )
    return [*attempts, current]


class AdminService:
    def __init__(self, manager: TaskManager, *, count_cap: int | None, metrics_ttl: float) -> None:
        self.manager = manager
        self.count_cap = count_cap
        self.insights = Insights(lambda: manager.store, ttl=metrics_ttl)

    # -- reads --------------------------------------------------------------------------------

    async def list_page(self, task_filter: TaskFilter, *, limit: int, offset: int, count: bool = True) -> Page:
        # N+1 rows tell whether there is a next page without counting.
        # No flush() first: reads never wait for the writer; the event stream fills the gap.
        found = await asyncio.to_thread(
            lambda: self.manager.store.summary_page(
                task_filter, limit=limit + 1, offset=offset, count=count, count_cap=self.count_cap
            )
        )
        return Page(found.rows[:limit], found.total, found.exact, limit, offset, len(found.rows) > limit)

    async def task(self, task_id: str) -> TaskView | None:
        def read() -> TaskView | None:
            detail = self.manager.store.task_detail(task_id, audit_limit=AUDIT_ON_TASK_PAGE)
            if detail is None:
                return None
            attempts = with_current_attempt(detail.row, detail.attempts)
            waiting = None
            if detail.row.status == TaskStatus.PENDING.value:
                waiting = self._waiting([detail.row])[detail.row.id]
            return TaskView(
                row=detail.row, attempts=attempts, retried_as=detail.retried_as, audit=detail.audit, waiting=waiting
            )

        view = await asyncio.to_thread(read)
        if view is None and self.manager.running:
            # A task this instance enqueued moments ago may not be written yet: a flush writes it.
            await self.manager.flush()
            view = await asyncio.to_thread(read)
        return view

    async def waiting_for(self, rows: list[Any]) -> dict[str, Waiting]:
        """Why each PENDING row among `rows` has not started, by task id (the list's badges)."""
        pending = [row for row in rows if row.status == TaskStatus.PENDING.value]
        if not pending:
            return {}
        return await asyncio.to_thread(lambda: self._waiting(pending))

    def _waiting(self, rows: list[Any]) -> dict[str, Waiting]:
        """Why each of these PENDING rows waits. A task with a concurrency limit costs one read of
        its running rows per key, one with a rate limit one read of its window, whatever the
        number of its rows; a task without a limit costs none."""
        store = self.manager.store
        now = utcnow()
        running: dict[tuple[str, str | None], tuple[int, int]] = {}
        rates: dict[str, Usage] = {}
        reasons = {}
        for row in rows:
            spec = self.manager.registry.get(row.name)
            options = None if spec is None else spec.options
            of_task = (0, 0)
            rate = None
            if options is not None and (options.max_concurrent or options.max_concurrent_per_key):
                key = (row.name, row.concurrency_key)
                if key not in running:
                    running[key] = store.running_of(row.name, row.concurrency_key)
                of_task = running[key]
            if options is not None and options.rate is not None:
                if row.name not in rates:
                    rates[row.name] = store.rate_usage(row.name, options.rate, self.manager.rate_windows)
                rate = rates[row.name]
            reasons[row.id] = waiting_reason(row, options, running=of_task, rate=rate, now=now)
        return reasons

    async def rows(self, task_ids: list[str]) -> list[Any]:
        return await asyncio.to_thread(self.manager.store.summaries, task_ids)

    async def audit(
        self, *, limit: int, offset: int, task_id: str | None = None, actor: str | None = None
    ) -> list[Any]:
        store = self.manager.store
        return await asyncio.to_thread(
            lambda: store.list_audit(limit=limit, offset=offset, task_id=task_id, actor=actor)
        )

    async def metrics(self) -> MetricsSnapshot:
        """Counts include every task this process enqueued before the call: a cached snapshot
        taken before one of them is not used, and unwritten rows are flushed first."""
        mark = self.manager.enqueued_total  # read before the flush: the flush writes all it counts
        if not self.insights.holds(mark):
            await self.manager.flush()
        return await asyncio.to_thread(self.insights.snapshot, mark)

    def registry(self) -> list[dict[str, Any]]:
        return [spec.describe() for spec in self.manager.registry.all() if spec.registered]

    async def schedules(self) -> list[Any]:
        """Every stored schedule, with the status of its last run's task (`last_status`)."""
        return await asyncio.to_thread(self.manager.store.list_schedules)

    # -- actions (audited) ----------------------------------------------------------------------

    async def pause_schedule(self, principal: Principal, name: str, *, paused: bool) -> None:
        """Pause (or resume) a schedule on every instance; raises ScheduleNotFound."""
        if paused:
            await self.manager.pause_schedule(name, actor=principal.username)
        else:
            await self.manager.resume_schedule(name, actor=principal.username)

    async def retry(self, principal: Principal, task_id: str, *, detail: str | None = None) -> str:
        """The new task's id. Raises TaskNotFound, or ActionRefused when the task can't be retried."""
        try:
            new_id = await self.manager.retry(task_id)
        except TaskNotRetryable as error:
            raise ActionRefused(str(error)) from None
        await self._audit(principal, "retry", task_id, json.dumps({"new_task_id": new_id, "via": detail or "single"}))
        self.insights.invalidate()
        return new_id

    async def cancel(self, principal: Principal, task_id: str) -> CancelOutcome:
        outcome = await self.manager.cancel(task_id)
        if outcome is CancelOutcome.NOT_FOUND:
            raise TaskNotFound(task_id)
        if outcome is CancelOutcome.ALREADY_FINISHED:
            raise ActionRefused(f"task {task_id} has already finished")
        await self._audit(principal, "cancel", task_id, json.dumps({"outcome": outcome.value}))
        self.insights.invalidate()
        return outcome

    async def retry_failed(
        self, principal: Principal, task_filter: TaskFilter, *, limit: int
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Retry up to `limit` failed tasks matching the filter that were not retried yet.

        Returns ([(old id, new id)], [(old id, reason)]).
        """
        await self.manager.flush()
        ids = await asyncio.to_thread(lambda: self.manager.store.retryable_failed_ids(task_filter, limit=limit))
        done: list[tuple[str, str]] = []
        refused: list[tuple[str, str]] = []
        for task_id in ids:
            try:
                done.append((task_id, await self.retry(principal, task_id, detail="bulk")))
            except (TaskNotFound, ActionRefused) as error:
                refused.append((task_id, str(error)))
        summary = {"filter": describe_filter(task_filter), "retried": len(done), "refused": len(refused)}
        await self._audit(principal, "retry-failed", None, json.dumps(summary))
        return done, refused

    async def audit_action(self, principal: Principal, action: str, detail: dict[str, Any]) -> None:
        """One audit entry for an action on many tasks, its detail as JSON."""
        await self._audit(principal, action, None, json.dumps(detail, default=str))

    async def _audit(self, principal: Principal, action: str, task_id: str | None, detail: str | None) -> None:
        store = self.manager.store
        await asyncio.to_thread(
            lambda: store.add_audit(actor=principal.username, action=action, task_id=task_id, detail=detail)
        )


def describe_filter(task_filter: TaskFilter) -> dict[str, str]:
    values = {
        "status": str(task_filter.status) if task_filter.status else None,
        "name": task_filter.name,
        "since": task_filter.since.isoformat() if task_filter.since else None,
        "until": task_filter.until.isoformat() if task_filter.until else None,
        "q": task_filter.text,
        "min_priority": None if task_filter.min_priority is None else str(task_filter.min_priority),
    }
    return {key: value for key, value in values.items() if value}
