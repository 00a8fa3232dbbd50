"""Prometheus counters and histograms of what this instance ran, and the age of the oldest pending task.

The counters and histograms count in this process (Prometheus sums them over instances); the
oldest pending task is read from the store at scrape time, so every instance reports the same.

They are plain numbers updated on the event loop and turned into metric families when scraped:
prometheus_client's own Counter and Histogram take a lock per update, which cost more per task
than everything else the runner adds to a short task's record.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from .models import utcnow
from .store import Store

# Seconds, from a no-op task to an hour-long report.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

# The `le` labels, as prometheus_client writes them (its helper is not annotated).
_BOUNDS = (*(floatToGoString(bound) for bound in BUCKETS), "+Inf")  # type: ignore[no-untyped-call]


@dataclass(eq=False)
class _Histogram:
    # Observations per bucket (not cumulative); the last one is past the largest bound (+Inf).
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.total += value

    def cumulative(self) -> tuple[list[tuple[str, float]], float]:
        counts = list(self.counts)  # one copy: the loop may add to it while a scrape reads
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(_BOUNDS, counts, strict=True):
            running += count
            buckets.append((bound, running))
        return buckets, self.total


class TaskMetrics:
    """Observed by the runner and the recovery; registered on the admin's Prometheus registry."""

    def __init__(self) -> None:
        self._outcomes: Counter[tuple[str, str]] = Counter()
        self._retries: Counter[str] = Counter()
        self._recoveries: Counter[str] = Counter()
        self._queue_wait: dict[str, _Histogram] = {}
        self._run_time: dict[str, _Histogram] = {}

    def started(self, task: str, waited: float) -> None:
        histogram = self._queue_wait.get(task)
        if histogram is None:
            histogram = self._queue_wait[task] = _Histogram()
        histogram.observe(max(0.0, waited))

    def ran(self, task: str, seconds: float) -> None:
        histogram = self._run_time.get(task)
        if histogram is None:
            histogram = self._run_time[task] = _Histogram()
        histogram.observe(seconds)

    def ended(self, task: str, outcome: str) -> None:
        self._outcomes[task, outcome] += 1

    def retried(self, task: str) -> None:
        self._retries[task] += 1

    def recovered(self, task: str) -> None:
        self._recoveries[task] += 1

    def collectors(self, store: Callable[[], Store]) -> list[Collector]:
        return [_Collector(self), OldestPending(store)]

    def families(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        outcomes = CounterMetricFamily(
            "taskflow_task_outcomes",
            "Tasks that ended here, by task name and outcome (succeeded, failed, cancelled, quarantined).",
            labels=["task", "outcome"],
        )
        for (task, outcome), count in sorted(dict(self._outcomes).items()):
            outcomes.add_metric([task, outcome], count)
        yield outcomes
        for name, documentation, counts in (
            ("taskflow_task_retries", "Failed attempts scheduled to run again, by task name.", self._retries),
            (
                "taskflow_task_recoveries",
                "Tasks taken over from an instance that stopped or lost its lease, by task name.",
                self._recoveries,
            ),
        ):
            family = CounterMetricFamily(name, documentation, labels=["task"])
            for task, count in sorted(dict(counts).items()):
                family.add_metric([task], count)
            yield family
        for name, documentation, histograms in (
            (
                "taskflow_task_queue_wait_seconds",
                "From when an attempt was due (enqueued, or its delay or retry wait over) to its start, by task name.",
                self._queue_wait,
            ),
            ("taskflow_task_run_seconds", "Run time of each attempt, by task name.", self._run_time),
        ):
            histograms_family = HistogramMetricFamily(name, documentation, labels=["task"])
            for task, histogram in sorted(dict(histograms).items()):
                buckets, total = histogram.cumulative()
                histograms_family.add_metric([task], buckets, total)
            yield histograms_family


class _Collector(Collector):
    def __init__(self, metrics: TaskMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        return self._metrics.families()


class OldestPending(Collector):
    """Age of the oldest task that is due and waits to start (0 when none waits)."""

    def __init__(self, store: Callable[[], Store]) -> None:
        self._store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = utcnow()
        oldest = self._store().oldest_due_pending(now)
        age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        yield GaugeMetricFamily(
            "taskflow_oldest_pending_age_seconds",
            "Seconds the oldest due task has been waiting to start (0 when none waits).",
            value=age,
        )
