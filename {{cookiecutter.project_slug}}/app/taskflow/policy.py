"""Retry policy: when to try again, and after how long."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .options import DEFAULTS, TaskOptions


class RetryAfter(Exception):
    """Raise from a task to be retried after `seconds` (e.g. an HTTP 429/503 `Retry-After`).

    It uses one retry like any failure, but its delay replaces the computed backoff.
    """

    def __init__(self, seconds: float, message: str = "") -> None:
        if seconds < 0:
            raise ValueError(f"RetryAfter needs seconds >= 0, got {seconds!r}")
        self.seconds = float(seconds)
        super().__init__(message or f"retry requested in {self.seconds:g}s")

    def __repr__(self) -> str:
        return f"RetryAfter(seconds={self.seconds:g})"


class TaskCancelled(Exception):
    """Raised inside a sync task by `check_cancelled()` once someone cancelled it."""


class TaskTimeout(Exception):
    """The attempt ran longer than the task's `timeout`."""


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How a task is retried. The defaults are @task's (see options.py): no retries."""

    # Additional attempts after the first failure.
    retries: int = DEFAULTS.retries
    # Seconds before the first retry.
    delay: float = DEFAULTS.delay
    # Multiplier applied to the delay on each further retry.
    backoff: float = DEFAULTS.backoff
    # Upper bound on any computed delay, in seconds.
    max_delay: float = DEFAULTS.max_delay
    # Full jitter: pick the delay uniformly in [0, computed delay] to spread retry storms.
    jitter: bool = DEFAULTS.jitter
    # Only these exceptions are retried (RetryAfter always is).
    retry_on: tuple[type[BaseException], ...] = DEFAULTS.retry_on
    # These are never retried, even if they match retry_on.
    give_up_on: tuple[type[BaseException], ...] = DEFAULTS.give_up_on

    def __post_init__(self) -> None:
        problems = []
        if self.retries < 0:
            problems.append(f"retries must be >= 0, got {self.retries!r}")
        if self.delay < 0:
            problems.append(f"delay must be >= 0 seconds, got {self.delay!r}")
        if self.backoff < 1:
            problems.append(f"backoff must be >= 1 (1 keeps the delay constant), got {self.backoff!r}")
        if self.max_delay < 0:
            problems.append(f"max_delay must be >= 0 seconds, got {self.max_delay!r}")
        for option in ("retry_on", "give_up_on"):
            for item in getattr(self, option):
                if not (isinstance(item, type) and issubclass(item, BaseException)):
                    problems.append(f"{option} must list exception classes, got {item!r}")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def of(cls, options: TaskOptions) -> RetryPolicy:
        """The retry part of a task's options."""
        return cls(
            retries=options.retries,
            delay=options.delay,
            backoff=options.backoff,
            max_delay=options.max_delay,
            jitter=options.jitter,
            retry_on=options.retry_on,
            give_up_on=options.give_up_on,
        )

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """True when `attempt` (1-based) failed with `error` and another attempt is allowed."""
        if attempt > self.retries:
            return False
        if isinstance(error, TaskCancelled):
            return False
        if isinstance(error, RetryAfter):
            return True
        if self.give_up_on and isinstance(error, self.give_up_on):
            return False
        return isinstance(error, self.retry_on)

    def delay_after(self, error: BaseException, attempt: int, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed `attempt` (1-based) before the next one."""
        if isinstance(error, RetryAfter):
            return min(error.seconds, self.max_delay)
        computed = min(self.delay * self.backoff ** (attempt - 1), self.max_delay)
        if self.jitter:
            return (rng or random).uniform(0.0, computed)
        return computed

    def describe(self) -> dict[str, object]:
        """The effective policy as plain values, for the dashboard and the JSON API."""
        return {
            "retries": self.retries,
            "delay": self.delay,
            "backoff": self.backoff,
            "max_delay": self.max_delay,
            "jitter": self.jitter,
            "retry_on": [t.__name__ for t in self.retry_on],
            "give_up_on": [t.__name__ for t in self.give_up_on],
        }
