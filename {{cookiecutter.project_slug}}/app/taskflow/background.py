"""ManagedBackgroundTasks: FastAPI's BackgroundTasks whose add_task returns a task id.

add_task checks the arguments, writes the row (committed first when the task persists) and
keeps the job; after the response is sent, Starlette calls the object and the jobs are handed
to the manager's runner, which runs them concurrently (they do not wait for each other).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec

from fastapi import BackgroundTasks
from sqlmodel import Session

from .models import utcnow
from .options import check_concurrency_key, check_priority

if TYPE_CHECKING:
    from .manager import TaskManager

P = ParamSpec("P")


@dataclass(frozen=True, kw_only=True)
class EnqueueOptions:
    """How to enqueue, kept apart from the task's own keyword arguments."""

    # A second add_task with the same key returns the first task's id and runs nothing.
    idempotency_key: str | None = None
    # Run no earlier than this many seconds from now...
    delay: float | None = None
    # ...or no earlier than this moment (a naive datetime is taken as UTC).
    eta: datetime | None = None
    # Write the row in the caller's SQLModel session: it exists if and only if that commits.
    session: Session | None = None
    # This enqueue's priority instead of the task's own (@task_manager.task(priority=...)).
    priority: int | None = None
    # The key a task with max_concurrent_per_key is limited by (e.g. f"tenant-{tenant_id}").
    concurrency_key: str | None = None

    def __post_init__(self) -> None:
        if self.priority is not None:
            check_priority(self.priority)
        if self.concurrency_key is not None:
            check_concurrency_key(self.concurrency_key)

    def not_before(self) -> datetime | None:
        if self.delay is not None and self.eta is not None:
            raise ValueError("pass either delay or eta, not both")
        if self.delay is not None:
            if self.delay < 0:
                raise ValueError(f"delay must be >= 0 seconds, got {self.delay!r}")
            return utcnow() + timedelta(seconds=self.delay)
        if self.eta is not None:
            eta = self.eta
            return eta.astimezone(UTC) if eta.tzinfo else eta.replace(tzinfo=UTC)
        return None


NO_OPTIONS = EnqueueOptions()


class ManagedBackgroundTasks(BackgroundTasks):
    """Drop-in for FastAPI's BackgroundTasks: `add_task(func, *args, **kwargs) -> task_id`."""

    def __init__(self, task_manager: TaskManager, options: EnqueueOptions | None = None) -> None:
        super().__init__()
        self.task_manager = task_manager
        self._options = options or NO_OPTIONS
        self._task_ids: dict[str, None] = {}  # ordered, and a duplicate id is stored once

    def options(
        self,
        *,
        idempotency_key: str | None = None,
        delay: float | None = None,
        eta: datetime | None = None,
        session: Session | None = None,
        priority: int | None = None,
        concurrency_key: str | None = None,
    ) -> _OptionsView:
        """Enqueue options for the next add_task: `background_tasks.options(delay=5).add_task(f, x)`."""
        options = EnqueueOptions(
            idempotency_key=idempotency_key,
            delay=delay,
            eta=eta,
            session=session,
            priority=priority,
            concurrency_key=concurrency_key,
        )
        return _OptionsView(self, options)

    def add_task(self, func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> str:  # type: ignore[override]
        return self._add(func, args, kwargs, self._options)

    def _add(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], options: EnqueueOptions
    ) -> str:
        task_id = self.task_manager.enqueue(func, args, kwargs, options=options, handoff=False)
        self._task_ids[task_id] = None
        return task_id

    @property
    def task_ids(self) -> list[str]:
        return list(self._task_ids)

    async def __call__(self) -> None:
        # Called by Starlette after the response is sent: hand over, do not wait.
        self.task_manager.hand_off(list(self._task_ids))
        # Plain BackgroundTask objects someone appended directly to .tasks still run, as before.
        for task in self.tasks:
            await task()


class _OptionsView:
    def __init__(self, tasks: ManagedBackgroundTasks, options: EnqueueOptions) -> None:
        self._tasks = tasks
        self._options = options

    def add_task(self, func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> str:
        return self._tasks._add(func, args, kwargs, self._options)


def new_task_id() -> str:
    """A random (version 4) UUID as text: what `str(uuid.uuid4())` gives, at half its cost.

    Called once per enqueue; most of uuid4's time goes into building the UUID object.
    """
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
