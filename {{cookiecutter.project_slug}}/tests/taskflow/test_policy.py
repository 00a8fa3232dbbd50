"""Retry policy: backoff with cap and jitter, retry-on and give-up-on, RetryAfter."""

from __future__ import annotations

import random

import pytest

from app.taskflow import RetryAfter, RetryPolicy, TaskCancelled


def test_delay_grows_by_backoff_and_stops_at_the_cap() -> None:
    policy = RetryPolicy(retries=10, delay=1.0, backoff=2.0, max_delay=5.0)
    error = RuntimeError()
    assert [policy.delay_after(error, attempt) for attempt in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_full_jitter_stays_between_zero_and_the_computed_delay() -> None:
    policy = RetryPolicy(retries=5, delay=2.0, backoff=3.0, jitter=True)
    rng = random.Random(7)
    delays = [policy.delay_after(RuntimeError(), 2, rng=rng) for _ in range(200)]
    assert all(0.0 <= delay <= 6.0 for delay in delays)
    assert len({round(delay, 6) for delay in delays}) > 100


def test_retries_stop_after_the_configured_number() -> None:
    policy = RetryPolicy(retries=2)
    assert policy.should_retry(RuntimeError(), 1)
    assert policy.should_retry(RuntimeError(), 2)
    assert not policy.should_retry(RuntimeError(), 3)


def test_only_retry_on_exceptions_are_retried() -> None:
    policy = RetryPolicy(retries=3, retry_on=(ConnectionError,))
    assert policy.should_retry(ConnectionResetError(), 1)
    assert not policy.should_retry(ValueError(), 1)


def test_give_up_on_wins_over_retry_on() -> None:
    policy = RetryPolicy(retries=3, retry_on=(OSError,), give_up_on=(PermissionError,))
    assert policy.should_retry(OSError(), 1)
    assert not policy.should_retry(PermissionError(), 1)


def test_retry_after_sets_its_own_delay_and_is_always_retried() -> None:
    policy = RetryPolicy(retries=1, delay=100.0, retry_on=(ConnectionError,), max_delay=30.0)
    assert policy.should_retry(RetryAfter(2.5), 1)
    assert policy.delay_after(RetryAfter(2.5), 1) == 2.5
    assert policy.delay_after(RetryAfter(120), 1) == 30.0
    assert repr(RetryAfter(3)) == "RetryAfter(seconds=3)"


def test_a_cancelled_task_is_never_retried() -> None:
    assert not RetryPolicy(retries=5).should_retry(TaskCancelled(), 1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retries": -1}, "retries must be >= 0"),
        ({"delay": -0.5}, "delay must be >= 0"),
        ({"backoff": 0.5}, "backoff must be >= 1"),
        ({"retry_on": ("ValueError",)}, "retry_on must list exception classes"),
    ],
    ids=["negative-retries", "negative-delay", "shrinking-backoff", "string-exception"],
)
def test_bad_policy_is_refused_with_a_clear_message(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**options)  # type: ignore[arg-type]


def test_retry_after_refuses_a_negative_delay() -> None:
    with pytest.raises(ValueError, match="seconds >= 0"):
        RetryAfter(-1)
