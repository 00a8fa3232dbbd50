"""What a running task can see of itself: its id, progress reporting, logs and cancellation."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .models import utcnow
from .policy import TaskCancelled
from .storable import TEXT_LIMITS, storable_text

MAX_LOG_RECORDS = 200
MAX_LOG_MESSAGE = 2000

_current: ContextVar[TaskContext | None] = ContextVar("taskflow_current_task", default=None)


@dataclass(eq=False)
class TaskContext:
    """Handed to the code of one running attempt through a context variable."""

    task_id: str
    name: str
    attempt: int
    _on_progress: Callable[[TaskContext], None] = field(repr=False)
    progress_done: float | None = None
    progress_total: float | None = None
    progress_message: str | None = None
    logs: list[dict[str, str]] = field(default_factory=list, repr=False)
    dropped_logs: int = 0
    # Set on the event loop, read by the task's thread: a plain attribute is enough (nobody
    # waits on it), and a threading.Event per task cost more than a no-op task's own run.
    _cancel_requested: bool = field(default=False, repr=False)

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Report progress (`done` of `total`, with an optional message); shown live in the dashboard."""
        self.progress_done = float(done)
        self.progress_total = None if total is None else float(total)
        # Made storable here, not only on its way to the database: live events carry it too.
        limit = TEXT_LIMITS["progress_message"]
        self.progress_message = None if message is None else storable_text(str(message), limit)
        self._on_progress(self)

    @property
    def cancelled(self) -> bool:
        """True once someone asked to cancel this task; sync tasks should check it and stop."""
        return self._cancel_requested

    def check_cancelled(self) -> None:
        """Raise TaskCancelled if the task was cancelled: call it between steps of a sync task."""
        if self._cancel_requested:
            raise TaskCancelled(f"task {self.task_id} was cancelled")

    def request_cancel(self) -> None:
        self._cancel_requested = True

    def add_log(self, at: datetime, level: str, logger: str, message: str) -> None:
        if len(self.logs) >= MAX_LOG_RECORDS:
            self.dropped_logs += 1
            return
        self.logs.append({"at": at.isoformat(), "level": level, "logger": logger, "message": message[:MAX_LOG_MESSAGE]})


# True in a worker process of executor="process" tasks: a task's context stays in the parent.
in_worker_process = False


def current_task() -> TaskContext:
    """The context of the task running in this code, for progress, logs and cancellation."""
    context = _current.get()
    if context is None and in_worker_process:
        raise RuntimeError(
            'current_task() is not available in a task with executor="process": progress, logs and '
            "cancellation checks stay with the parent process; use the default executor for such a task"
        )
    if context is None:
        raise RuntimeError("current_task() is only available inside a running taskflow task")
    return context


def call_bound(context: TaskContext, func: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """Call `func` with `context` as what current_task() returns (run inside the attempt's context)."""
    _current.set(context)
    return func(*args, **kwargs)


def _capture(record: logging.LogRecord, context: TaskContext) -> None:
    """Keep a copy of a record emitted inside a task in that task's current attempt (bounded)."""
    try:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            message = f"{message}\n{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        context.add_log(utcnow(), record.levelname, record.name, message)
    except Exception:  # a broken log call must not break the task, nor the logging of it
        pass


_capture_lock = threading.Lock()
_installed = False


def install_log_capture() -> None:
    """Tag and capture records emitted inside tasks, once per process.

    A record factory rather than a handler on the root logger: a root handler would silence
    Python's last-resort output and turn a later `logging.basicConfig()` into a no-op, and it
    would see records only after the service's own handlers had formatted them. The factory
    runs as each record is made, so every handler sees `task_id`, `task_name` and `attempt`.
    """
    global _installed
    with _capture_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            context = _current.get()
            if context is not None:
                record.task_id = context.task_id
                record.task_name = context.name
                record.attempt = context.attempt
                _capture(record, context)
            return record

        logging.setLogRecordFactory(make_record)
        _installed = True
