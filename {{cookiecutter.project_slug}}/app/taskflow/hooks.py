"""Hooks: code of the service's own that runs when a task succeeds, fails, gives up or is quarantined.

A hook is a function of one argument (a TaskOutcome), sync or async. It runs on the instance
that recorded the outcome, once per event, after the outcome was handed to the writer: async
hooks as a task of their own on the event loop, sync hooks in a thread, so neither holds up
the runner. A hook that raises is logged; the task's outcome stays what it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("taskflow.hooks")

# What each event means (also the order the docs list them in).
EVENTS: dict[str, str] = {
    "succeeded": "an attempt succeeded: the task is done",
    "failed": "an attempt failed (retried or not; see TaskOutcome.will_retry)",
    "gave_up": "the task ended failed: retries used up, or an error the policy does not retry",
    "quarantined": "recovery stopped re-running a task that kept taking its process down",
}

Hook = Callable[["TaskOutcome"], Any]


@dataclass(frozen=True, kw_only=True)
class TaskOutcome:
    """What a hook is told about the event."""

    event: str
    task_id: str
    task_name: str
    attempt: int
    # The exception the attempt raised ("failed", "gave_up"); None otherwise.
    error: BaseException | None = None
    error_type: str | None = None
    error_message: str | None = None
    # "failed" only: whether the task will be tried again.
    will_retry: bool = False


class Hooks:
    """The listeners of one TaskManager: manager-wide per event, plus each task's on_failure."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Hook]] = {event: [] for event in EVENTS}
        self._on_failure: dict[str, Hook] = {}
        self._running: set[asyncio.Future[None]] = set()

    def on(self, event: str, hook: Hook) -> Hook:
        if event not in EVENTS:
            raise ValueError(f"unknown task event {event!r}; use one of: {', '.join(EVENTS)}")
        _require_callable(hook, f"the hook for {event!r}")
        self._listeners[event].append(hook)
        return hook

    def set_on_failure(self, task_name: str, hook: Hook) -> None:
        _require_callable(hook, f"on_failure of task {task_name!r}")
        self._on_failure[task_name] = hook

    def wants(self, event: str, task_name: str) -> bool:
        """Whether anything listens (checked first: most outcomes have no listener at all)."""
        if self._listeners[event]:
            return True
        return event in ("gave_up", "quarantined") and task_name in self._on_failure

    def emit(self, outcome: TaskOutcome, context: contextvars.Context | None = None) -> None:
        """Start the hooks of this outcome (on the event loop); `context` is what they see."""
        hooks = list(self._listeners[outcome.event])
        if outcome.event in ("gave_up", "quarantined"):
            task_hook = self._on_failure.get(outcome.task_name)
            if task_hook is not None:
                hooks.append(task_hook)
        loop = asyncio.get_running_loop()
        for hook in hooks:
            # A copy per hook of the enqueuing request's values (a request id in its log lines).
            run_in = context.copy() if context is not None else contextvars.Context()
            future = loop.create_task(self._call(hook, outcome), context=run_in)
            self._running.add(future)
            future.add_done_callback(self._running.discard)

    async def _call(self, hook: Hook, outcome: TaskOutcome) -> None:
        try:
            if _is_async(hook):
                await hook(outcome)
            else:
                await asyncio.to_thread(hook, outcome)
        except Exception:
            logger.exception(
                "taskflow: the %s hook %s of task %s (%s) raised; the task's outcome is unchanged",
                outcome.event,
                getattr(hook, "__qualname__", repr(hook)),
                outcome.task_id,
                outcome.task_name,
            )

    async def drain(self, timeout: float) -> None:
        """Let hooks still running finish (at shutdown), for up to `timeout` seconds."""
        if not self._running:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*self._running, return_exceptions=True)
        for future in list(self._running):
            future.cancel()


def _is_async(hook: Hook) -> bool:
    return inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(getattr(hook, "__call__", None))  # noqa: B004


def _require_callable(hook: object, what: str) -> None:
    if not callable(hook):
        raise TypeError(f"{what} must be a function taking a TaskOutcome, got {type(hook).__name__}")
