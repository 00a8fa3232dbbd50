"""Prometheus counters and histograms of what this instance ran, and the age of the oldest pending task.

The counters and histograms count in this process (Prometheus sums them over instances); the
oldest pending task is read from the store at scrape time, so every instance reports the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, or_, select

from .models import TaskStatus, utcnow
from .store import Store
from .store.writes import TASKS

# Seconds, from a no-op task to an hour-long report.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

OUTCOMES = ("succeeded", "failed", "cancelled", "quarantined")


class TaskMetrics:
    """Observed by the runner and the recovery; registered on the admin's Prometheus registry."""

    def __init__(self) -> None:
        # registry=None: never the process-wide default registry (two apps in one process, tests).
        self.outcomes = Counter(
            "taskflow_task_outcomes",
            "Tasks that ended here, by task name and outcome (succeeded, failed, cancelled, quarantined).",
            ["task", "outcome"],
            registry=None,
        )
        self.retries = Counter(
            "taskflow_task_retries", "Failed attempts scheduled to run again, by task name.", ["task"], registry=None
        )
        self.recoveries = Counter(
            "taskflow_task_recoveries",
            "Tasks taken over from an instance that stopped or lost its lease, by task name.",
            ["task"],
            registry=None,
        )
        self.queue_wait = Histogram(
            "taskflow_task_queue_wait_seconds",
            "From when an attempt was due (enqueued, or its delay or retry over) to its start, by task name.",
            ["task"],
            buckets=BUCKETS,
            registry=None,
        )
        self.run_time = Histogram(
            "taskflow_task_run_seconds",
            "Run time of each attempt, by task name.",
            ["task"],
            buckets=BUCKETS,
            registry=None,
        )
        # A labelled child per task name, looked up once: labels() costs more than observe().
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def started(self, task: str, waited: float) -> None:
        self._child(self.queue_wait, task).observe(max(0.0, waited))

    def ran(self, task: str, seconds: float) -> None:
        self._child(self.run_time, task).observe(seconds)

    def ended(self, task: str, outcome: str) -> None:
        self._child(self.outcomes, task, outcome).inc()

    def retried(self, task: str) -> None:
        self._child(self.retries, task).inc()

    def recovered(self, task: str) -> None:
        self._child(self.recoveries, task).inc()

    def collectors(self, store: Callable[[], Store]) -> list[Collector]:
        return [self.outcomes, self.retries, self.recoveries, self.queue_wait, self.run_time, OldestPending(store)]


class OldestPending(Collector):
    """Age of the oldest task that is due and waits to start (0 when none waits)."""

    def __init__(self, store: Callable[[], Store]) -> None:
        self._store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = utcnow()
        due_since = func.coalesce(TASKS.c.next_run_at, TASKS.c.created_at)
        query = select(func.min(due_since)).where(
            TASKS.c.status == TaskStatus.PENDING.value,
            or_(TASKS.c.next_run_at.is_(None), TASKS.c.next_run_at <= now),
        )
        oldest = self._store().read(lambda connection: connection.execute(query).scalar())
        age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        yield GaugeMetricFamily(
            "taskflow_oldest_pending_age_seconds",
            "Seconds the oldest due task has been waiting to start (0 when none waits).",
            value=age,
        )
