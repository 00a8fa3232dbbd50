"""JSON shapes of the admin API (a family per entity, as in the FastAPI full-stack template)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, overload

from pydantic import BaseModel

from ..storable import displayable


@overload
def _aware(value: datetime) -> datetime: ...
@overload
def _aware(value: None) -> None: ...
def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _json(text: str | None) -> Any:
    # Stored arguments are kept exactly as given: a lone surrogate in them would make the
    # response unencodable, so what is shown is made displayable.
    if text is None:
        return None
    try:
        return displayable(json.loads(text))
    except ValueError:
        return text


class TaskPublic(BaseModel):
    """One task as the list and the detail show it."""

    task_id: str
    func_name: str
    status: str
    created_at: datetime
    start_time: datetime | None
    end_time: datetime | None
    duration: float | None
    retries_used: int
    attempt: int
    max_attempts: int
    recoveries: int
    persist: bool
    next_run_at: datetime | None
    error: str | None
    error_type: str | None
    progress_done: float | None
    progress_total: float | None
    progress_message: str | None
    retry_of: str | None
    idempotency_key: str | None
    owner: str | None
    priority: int
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: Any, *, show_arguments: bool = False) -> TaskPublic:
        duration = None
        if row.started_at is not None and row.finished_at is not None:
            duration = max(0.0, (row.finished_at - row.started_at).total_seconds())
        # List rows carry no arguments (store.queries.SUMMARY_COLUMNS): only the detail shows them.
        stored = getattr(row, "arguments", None) if show_arguments else None
        arguments = _json(stored)
        return cls(
            task_id=row.id,
            func_name=row.name,
            status=row.status,
            created_at=_aware(row.created_at),
            start_time=_aware(row.started_at),
            end_time=_aware(row.finished_at),
            duration=duration,
            retries_used=row.retries_used,
            attempt=row.attempt,
            max_attempts=row.max_attempts,
            recoveries=row.recoveries,
            persist=row.persist,
            next_run_at=_aware(row.next_run_at),
            error=row.error_message,
            error_type=row.error_type,
            progress_done=row.progress_done,
            progress_total=row.progress_total,
            progress_message=row.progress_message,
            retry_of=row.retry_of,
            idempotency_key=row.idempotency_key,
            owner=row.owner,
            priority=row.priority,
            args=arguments.get("args") if isinstance(arguments, dict) else None,
            kwargs=arguments.get("kwargs") if isinstance(arguments, dict) else None,
        )


class AttemptPublic(BaseModel):
    number: int
    status: str
    owner: str | None
    started_at: datetime | None
    finished_at: datetime | None
    duration: float | None
    error_type: str | None
    error: str | None
    traceback: str | None
    logs: list[dict[str, Any]]

    @classmethod
    def from_row(cls, row: Any) -> AttemptPublic:
        logs = _json(row.logs)
        return cls(
            number=row.number,
            status=row.status,
            owner=row.owner,
            started_at=_aware(row.started_at),
            finished_at=_aware(row.finished_at),
            duration=row.duration,
            error_type=row.error_type,
            error=row.error_message,
            traceback=row.traceback,
            logs=logs if isinstance(logs, list) else [],
        )


class TaskDetail(TaskPublic):
    """A task with everything known about it."""

    traceback: str | None = None
    result: Any = None
    attempts: list[AttemptPublic] = []

    @classmethod
    def from_parts(cls, row: Any, attempts: list[Any], *, show_arguments: bool = False) -> TaskDetail:
        base = TaskPublic.from_row(row, show_arguments=show_arguments).model_dump()
        return cls(
            **base,
            traceback=row.traceback,
            result=_json(row.result),
            attempts=[AttemptPublic.from_row(a) for a in attempts],
        )


class DurationPublic(BaseModel):
    name: str
    count: int
    p50_seconds: float
    p95_seconds: float


class ThroughputPublic(BaseModel):
    minute: datetime
    success: int
    failed: int


class Metrics(BaseModel):
    """Counts cover the whole table; durations and throughput the newest `window` finished tasks."""

    total: int
    pending: int
    running: int
    success: int
    failed: int
    cancelled: int
    interrupted: int
    # 0.0 with nothing finished yet, as the reference library answers: always a number.
    success_rate: float
    avg_duration_seconds: float
    durations: list[DurationPublic] = []
    throughput: list[ThroughputPublic] = []
    finished_per_second: float = 0.0
    window: int = 0

    @classmethod
    def from_snapshot(cls, snapshot: Any) -> Metrics:
        return cls(
            total=snapshot.total,
            **snapshot.counts,
            success_rate=snapshot.success_rate or 0.0,
            avg_duration_seconds=snapshot.avg_duration_seconds or 0.0,
            durations=[
                DurationPublic(name=d.name, count=d.count, p50_seconds=d.p50, p95_seconds=d.p95)
                for d in snapshot.durations
            ],
            throughput=[
                ThroughputPublic(minute=b.start, success=b.success, failed=b.failed) for b in snapshot.throughput
            ],
            finished_per_second=snapshot.per_second,
            window=snapshot.window,
        )


class AuditPublic(BaseModel):
    """One admin action from the audit trail."""

    id: int
    at: datetime
    actor: str
    action: str
    task_id: str | None
    detail: str | None

    @classmethod
    def from_row(cls, row: Any) -> AuditPublic:
        return cls(
            id=row.id, at=_aware(row.at), actor=row.actor, action=row.action, task_id=row.task_id, detail=row.detail
        )


class RegisteredTask(BaseModel):
    """A registered task with its effective options (task option, otherwise the default)."""

    name: str
    function: str
    is_async: bool
    persist: bool
    timeout: float | None
    retries: int
    delay: float
    backoff: float
    max_delay: float
    jitter: bool
    retry_on: list[str]
    give_up_on: list[str]
    # Where a sync task runs: "thread" or "process".
    executor: str
    # The on_failure hook's qualified name, if any.
    on_failure: str | None = None
    # Higher starts first among ready tasks (an enqueue may override it).
    priority: int
    # At most this many run at once across every instance, in all and per concurrency key.
    max_concurrent: int | None = None
    max_concurrent_per_key: int | None = None
    # At most this many starts in any window of its period, e.g. "10/minute".
    rate_limit: str | None = None


class SchedulePublic(BaseModel):
    """A periodic schedule: its timing, next and last due time, and its last run's outcome."""

    name: str
    kind: str  # "every" (seconds) or "cron"
    expression: str
    timezone: str
    paused: bool
    next_run_at: datetime
    last_run_at: datetime | None
    last_task_id: str | None
    # The status of the last run's task; None before the first run (or once retention deleted it).
    last_status: str | None

    @classmethod
    def from_row(cls, row: Any) -> SchedulePublic:
        return cls(
            name=row.name,
            kind=row.kind,
            expression=row.expression,
            timezone=row.timezone,
            paused=row.paused,
            next_run_at=_aware(row.next_run_at),
            last_run_at=_aware(row.last_run_at),
            last_task_id=row.last_task_id,
            last_status=row.last_status,
        )


class ActionResult(BaseModel):
    """The outcome of retry or cancel."""

    task_id: str
    outcome: str
    new_task_id: str | None = None


class BulkRetryResult(BaseModel):
    retried: list[ActionResult]
    failed: list[dict[str, str]] = []
