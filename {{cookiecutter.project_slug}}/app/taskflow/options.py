"""The options of @task_manager.task and their defaults, written here and nowhere else.

The decorator, the retry policy, the registry (and so the registry page and API) all take a
default from TaskOptions; the options table in the taskflow README is pinned to it by a test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

from .rates import Rate, parse_rate

# The range of `priority`: wide enough for a few tiers with room between them, narrow enough
# that a typo (a timestamp, a size) is caught.
PRIORITY_MIN = -100
PRIORITY_MAX = 100
# The length of the concurrency_key column (models.TaskRecord).
CONCURRENCY_KEY_MAX = 200


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
    # At most this many of this task run at once across every instance sharing the database;
    # the others wait PENDING until a slot frees. None for no limit. See "Concurrency limits".
    max_concurrent: int | None = None
    # At most this many run at once per `options(concurrency_key=...)` (e.g. one per tenant);
    # tasks enqueued with no key are only held by max_concurrent. None for no limit.
    max_concurrent_per_key: int | None = None
    # At most this many starts in any window of the period, across every instance: "10/minute",
    # "20/second", "100/5 minutes" (rates.py). Over it, tasks wait PENDING for their turn.
    # None for no limit. See "Rate limits".
    rate_limit: str | None = None

    def __post_init__(self) -> None:
        check_priority(self.priority, task=self.name)
        for option in ("max_concurrent", "max_concurrent_per_key"):
            check_limit(option, getattr(self, option), task=self.name)
        if self.rate_limit is not None:
            parse_rate(self.rate_limit, task=self.name)
        # A list of exception classes is as clear as a tuple; stored as a tuple (hashable, frozen).
        for option in ("retry_on", "give_up_on"):
            value = getattr(self, option)
            if isinstance(value, list):
                object.__setattr__(self, option, tuple(value))

    @property
    def limited(self) -> bool:
        """Whether this task has a concurrency or rate limit: then only the claim of ownerless rows starts it."""
        return self.max_concurrent is not None or self.max_concurrent_per_key is not None or self.rate_limit is not None

    @cached_property
    def rate(self) -> Rate | None:
        """`rate_limit` parsed (None: no rate limit)."""
        return None if self.rate_limit is None else parse_rate(self.rate_limit, task=self.name)

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


def check_limit(option: str, value: object, *, task: str | None = None) -> None:
    """A ValueError naming the task and showing an example unless `value` is None or an int >= 1."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return
    where = f" of task {task!r}" if task else ""
    raise ValueError(
        f"{option}{where} must be an int >= 1 (or None for no limit), got {value!r}; "
        f"e.g. @task_manager.task({option}=2)"
    )


def check_concurrency_key(key: object) -> str:
    """`key` if it is a non-empty string that fits its column; else a ValueError showing an example."""
    if isinstance(key, str) and 0 < len(key) <= CONCURRENCY_KEY_MAX:
        return key
    raise ValueError(
        f"concurrency_key must be a non-empty str of at most {CONCURRENCY_KEY_MAX} characters, got {key!r}; "
        'e.g. background_tasks.options(concurrency_key=f"tenant-{tenant_id}")'
    )


def check_limited_enqueue(task: str, options: TaskOptions, enqueue: Any) -> bool:
    """Whether this enqueue of `task` is held by a concurrency limit; a concurrency_key on a task
    that declared no max_concurrent_per_key is a ValueError (its key would limit nothing)."""
    if enqueue.concurrency_key is not None and options.max_concurrent_per_key is None:
        raise ValueError(
            f"concurrency_key={enqueue.concurrency_key!r} given for task {task!r}, which declares no "
            f"max_concurrent_per_key: declare it, e.g. @task_manager.task(max_concurrent_per_key=1)"
        )
    return options.limited


def option_names() -> tuple[str, ...]:
    """Every option of @task_manager.task, in the order the docs list them."""
    return tuple(field.name for field in fields(TaskOptions))


# The defaults, for code that needs one of them (e.g. the retry policy's own defaults).
DEFAULTS = TaskOptions()
