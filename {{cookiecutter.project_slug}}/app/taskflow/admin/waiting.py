"""Why a pending task has not started yet, in words for the task page."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..options import TaskOptions


def waiting_reason(row: Any, options: TaskOptions | None, running: tuple[int, int], now: datetime) -> str:
    """The first thing that holds a PENDING row back: its delay, a concurrency limit (of its task
    or of its key), else its turn (priority and enqueue order) for a free worker."""
    if row.next_run_at is not None and row.next_run_at > now:
        return f"delayed until {row.next_run_at:%Y-%m-%d %H:%M:%S} UTC"
    of_name, of_key = running
    if options is not None and options.max_concurrent is not None and of_name >= options.max_concurrent:
        return f"concurrency limit: {of_name} of {row.name} running (max_concurrent={options.max_concurrent})"
    per_key = None if options is None else options.max_concurrent_per_key
    if per_key is not None and row.concurrency_key is not None and of_key >= per_key:
        return f"concurrency limit of key {row.concurrency_key}: {of_key} running (max_concurrent_per_key={per_key})"
    return "its turn: a free worker takes ready tasks highest priority first, then oldest"
