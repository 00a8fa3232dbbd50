"""The options of @task_manager.task and their defaults, written here and nowhere else.

The decorator, the retry policy, the registry (and so the registry page and API) all take a
default from TaskOptions; the options table in the taskflow README is pinned to it by a test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

# The range of `priority`: wide enough for a few tiers with room between them, narrow enough
# that a typo (a timestamp, a size) is caught.
PRIORITY_MIN = -100
PRIORITY_MAX = 100


@dataclass(frozen=True, kw_only=True)
class TaskOptions:
    """What one @task_manager.task(...) declared; an option it leaves out has the default here."""

    # Additional attempts after the first failure.
    retries: int = 0
    # Seconds before the first retry.
    delay: float = 0.0
    # Multiplier applied to the delay on each further retry.
    backoff: float = 1.0
    # Upper bound on any computed delay, in seconds.
    max_delay: float = 3600.0
    # Full jitter: pick the delay uniformly in [0, computed delay] to spread retry storms.
    jitter: bool = False
    # Only these exceptions are retried (RetryAfter always is).
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    # These are never retried, even if they match retry_on.
    give_up_on: tuple[type[BaseException], ...] = ()
    # Seconds one attempt may run; None for no limit.
    timeout: float | None = None
    # Commit the row before add_task returns and re-run after a crash (at-least-once).
    persist: bool = False
    # The stable name of the task; None for the function's own name.
    name: str | None = None
    # Where a sync task runs: "thread" (a thread of this process) or "process" (a worker process,
    # for CPU-bound work; see process_executor.py). Async tasks run on the event loop.
    executor: str = "thread"
    # Called (sync or async) once when this task gives up: retries used up, a give-up exception,
    # or quarantined after crashes. See hooks.py.
    on_failure: Callable[..., Any] | None = None
    # Among tasks ready to run, a higher priority starts first (on this instance and in the
    # claims of ownerless rows across instances); equal priorities keep enqueue order.
    # An int from PRIORITY_MIN to PRIORITY_MAX; `options(priority=...)` overrides it per enqueue.
    priority: int = 0

    def __post_init__(self) -> None:
        check_priority(self.priority, task=self.name)
        # A list of exception classes is as clear as a tuple; stored as a tuple (hashable, frozen).
        for option in ("retry_on", "give_up_on"):
            value = getattr(self, option)
            if isinstance(value, list):
                object.__setattr__(self, option, tuple(value))

    @classmethod
    def from_arguments(cls, arguments: dict[str, Any]) -> TaskOptions:
        """The options given to the decorator by name; an unknown name is a clear error."""
        known = option_names()
        unknown = sorted(set(arguments) - set(known))
        if unknown:
            raise TypeError(
                f"@task got unknown option(s) {', '.join(map(repr, unknown))}; the options are {', '.join(known)}"
            )
        return cls(**arguments)


def check_priority(priority: object, *, task: str | None = None) -> int:
    """`priority` if it is an int in range; else a ValueError naming the task and showing an example."""
    if isinstance(priority, int) and not isinstance(priority, bool) and PRIORITY_MIN <= priority <= PRIORITY_MAX:
        return priority
    where = f" of task {task!r}" if task else ""
    raise ValueError(
        f"priority{where} must be an int from {PRIORITY_MIN} to {PRIORITY_MAX} (higher runs first), "
        f"got {priority!r}; e.g. @task_manager.task(priority=10) or background_tasks.options(priority=10)"
    )


def option_names() -> tuple[str, ...]:
    """Every option of @task_manager.task, in the order the docs list them."""
    return tuple(field.name for field in fields(TaskOptions))


# The defaults, for code that needs one of them (e.g. the retry policy's own defaults).
DEFAULTS = TaskOptions()
