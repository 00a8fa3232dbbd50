"""Waiting for a task's result: `await task_manager.result(task_id, timeout=...)`.

The database is the source of truth: the waiter returns what the task's row says once it is
finished. Between reads it waits for whichever comes first:

- an event saying the task finished (this instance's own, or another instance's through Redis
  when REDIS_URL is set): the row is read again at once;
- the next poll, at an interval that doubles from RESULT_POLL_FIRST up to RESULT_POLL_MAX, for
  a task finished where no event reaches us (another instance without Redis, or a command line
  manager that is not running). A long wait therefore costs one read every RESULT_POLL_MAX
  seconds, and a short one a few reads.

The waiter starts watching the task's events before its first read, so a task that finishes
between the two is not missed (the watch keeps its latest event). A watch is found by task id:
a thousand waiters do not each receive every event of the instance. An instance publishes a
task's event before its writer commits the row, so a read after a remote event may still see
it running: the poll interval then starts again from RESULT_POLL_FIRST, chasing the commit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .arguments import TaskResultInvalid
from .events import EventBus, TaskWatch
from .manager import UNWRITTEN_GRACE, TaskManager, TaskNotFound
from .models import TaskStatus

# Seconds between two reads of a row no event told us about: the first wait, and the longest.
RESULT_POLL_FIRST = 0.05
RESULT_POLL_MAX = 2.0

FINISHED = frozenset(
    status.value for status in (TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.INTERRUPTED)
)

__all__ = [
    "RESULT_POLL_FIRST",
    "RESULT_POLL_MAX",
    "PollSchedule",
    "TaskFailed",
    "TaskResultInvalid",
    "TaskResultTimeout",
    "wait_for_result",
    "wait_until_finished",
]


class TaskFailed(Exception):
    """The task did not succeed: it failed (retries used up), was cancelled or was interrupted.

    Carries what its row recorded: `status` ("failed", "cancelled" or "interrupted"), and the
    last attempt's `error_type`, `error_message` and `traceback` (text; None if it had none).
    """

    def __init__(
        self,
        *,
        task_id: str,
        task_name: str,
        status: str,
        error_type: str | None,
        error_message: str | None,
        traceback: str | None,
    ) -> None:
        self.task_id = task_id
        self.task_name = task_name
        self.status = status
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback
        error = ": ".join(part for part in (error_type, error_message) if part)
        super().__init__(f"task {task_name!r} ({task_id}) {status}" + (f": {error}" if error else ""))


class TaskResultTimeout(TimeoutError):
    """The task had not finished when the wait's timeout ran out (it goes on running)."""

    def __init__(self, task_id: str, timeout: float, status: str | None) -> None:
        self.task_id = task_id
        self.status = status
        super().__init__(
            f"task {task_id} had not finished after {timeout:g}s (it is {status or 'not yet written'}); "
            "it goes on running: wait again, or cancel it"
        )


@dataclass(frozen=True)
class PollSchedule:
    """The waits between reads of a row that no event told us about: doubling, capped."""

    first: float = RESULT_POLL_FIRST
    most: float = RESULT_POLL_MAX

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.most:
            raise ValueError(f"PollSchedule needs 0 < first <= most, got first={self.first!r}, most={self.most!r}")

    def delays(self) -> Iterator[float]:
        delay = self.first
        while True:
            yield delay
            delay = min(delay * 2, self.most)


async def wait_for_result(manager: TaskManager, task_id: str, *, timeout: float | None) -> Any:
    """What `TaskManager.result` does (see its docstring)."""

    async def read() -> Any | None:
        return await asyncio.to_thread(manager.store.get, task_id)

    row = await wait_until_finished(
        task_id,
        read=read,
        settle=manager.flush,
        events=manager.events,
        timeout=timeout,
        # Another instance may hold a task it enqueued moments ago for up to its write_behind.
        unknown_after=manager.config.write_behind + UNWRITTEN_GRACE,
    )
    if row.status != TaskStatus.SUCCESS.value:
        raise TaskFailed(
            task_id=row.id,
            task_name=row.name,
            status=row.status,
            error_type=row.error_type,
            error_message=row.error_message,
            traceback=row.traceback,
        )
    spec = manager.registry.get(row.name)
    if spec is None:
        # Not registered here (e.g. a script that only waits): no hint to validate against.
        return None if row.result is None else json.loads(row.result)
    return spec.signature.load_result(row.name, row.result)


async def wait_until_finished(
    task_id: str,
    *,
    read: Callable[[], Awaitable[Any | None]],
    events: EventBus,
    timeout: float | None,
    unknown_after: float,
    settle: Callable[[], Awaitable[None]] | None = None,
    schedule: PollSchedule | None = None,
) -> Any:
    """Read the task's row (with `read`) until it is finished; return it.

    `settle` runs before the first read and before the read that follows a finished event, so
    that writes this instance still holds are in the database (the manager's flush). `schedule`
    spaces the reads no event asked for; after a finished event the reads that chase its commit
    follow the default schedule. Raises TaskNotFound if no row appears within `unknown_after`
    seconds, TaskResultTimeout after `timeout` seconds (None: no limit).
    """
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 seconds or None, got {timeout!r}")
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = None if timeout is None else started + timeout
    delays = (schedule or PollSchedule()).delays()
    with events.watch(task_id) as watch:
        woken = True  # the first read settles too: our own writes of the task may be held
        while True:
            if settle is not None and woken:
                await settle()
            row = await read()
            if row is not None and row.status in FINISHED:
                return row
            now = loop.time()
            if row is None and now - started > unknown_after:
                raise TaskNotFound(f"no task with id {task_id!r}")
            if deadline is not None and now >= deadline:
                raise TaskResultTimeout(task_id, timeout or 0.0, None if row is None else row.status)
            wait = next(delays)
            if deadline is not None:
                wait = min(wait, deadline - now)
            if row is None:
                wait = min(wait, max(0.0, started + unknown_after - now) + RESULT_POLL_FIRST)
            woken = await _finished_event(watch, wait)
            if woken:
                # The finish event can come before its row is committed: chase the commit.
                delays = PollSchedule().delays()


async def _finished_event(watch: TaskWatch, wait: float) -> bool:
    """Wait up to `wait` seconds for an event saying the task finished."""
    try:
        async with asyncio.timeout(wait):
            while True:
                if watch.latest is not None and watch.latest.status in FINISHED:
                    watch.latest = None  # seen: a later read that still finds it running waits for the poll
                    return True
                watch.changed.clear()
                await watch.changed.wait()
    except TimeoutError:
        return False
