"""Why a pending task has not started yet: a short kind for a badge, and words for the task page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..options import TaskOptions
from ..rates import Usage


@dataclass(frozen=True)
class Waiting:
    """What holds a PENDING task back. `kind` is one of "delay", "limit", "rate" or "turn"."""

    kind: str
    text: str


def waiting_reason(
    row: Any, options: TaskOptions | None, *, running: tuple[int, int], rate: Usage | None, now: datetime
) -> Waiting:
    """The first thing that holds a PENDING row back: its delay, a concurrency limit (of its task
    or of its key), its task's rate limit, else its turn (priority and enqueue order) for a free
    worker. `running`: RUNNING rows of its task and of its key (Store.running_of); `rate`: its
    task's current rate window (Store.rate_usage), None when it has no rate limit."""
    if row.next_run_at is not None and row.next_run_at > now:
        return Waiting("delay", f"delayed until {row.next_run_at:%Y-%m-%d %H:%M:%S} UTC")
    of_name, of_key = running
    if options is not None and options.max_concurrent is not None and of_name >= options.max_concurrent:
        return Waiting(
            "limit", f"concurrency limit: {of_name} of {row.name} running (max_concurrent={options.max_concurrent})"
        )
    per_key = None if options is None else options.max_concurrent_per_key
    if per_key is not None and row.concurrency_key is not None and of_key >= per_key:
        return Waiting(
            "limit",
            f"concurrency limit of key {row.concurrency_key}: {of_key} running (max_concurrent_per_key={per_key})",
        )
    if options is not None and options.rate is not None and rate is not None and rate.frees_at is not None:
        next_start = rate.frees_at.strftime("%H:%M:%S.%f")[:-3]  # to the millisecond
        return Waiting(
            "rate",
            f"rate limit: {rate.started} of {row.name} started within its window (rate_limit {options.rate.text}); "
            f"the next may start at {next_start} UTC",
        )
    return Waiting("turn", "its turn: a free worker takes ready tasks highest priority first, then oldest")
