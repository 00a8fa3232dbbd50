"""Task metrics from the store: a cached snapshot over bounded windows, and a Prometheus collector.

Counting by status is one GROUP BY over an index; everything about durations and throughput is
computed from the newest WINDOW tasks of each final status, so the cost does not grow with the
table. The snapshot is cached for a couple of seconds: dashboards and scrapers poll it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .events import EventBus
from .models import TaskStatus, utcnow
from .store import Store

WINDOW = 2000  # newest finished tasks per final status that durations and throughput look at
THROUGHPUT_MINUTES = 30


@dataclass(frozen=True)
class DurationStats:
    name: str
    count: int
    p50: float
    p95: float


@dataclass(frozen=True)
class MinuteBucket:
    start: datetime
    success: int
    failed: int


@dataclass(frozen=True)
class MetricsSnapshot:
    counts: dict[str, int]
    success_rate: float | None
    avg_duration_seconds: float | None
    durations: list[DurationStats]
    # Tasks finished per minute, oldest first; minutes older than `complete_since` may be undercounted.
    throughput: list[MinuteBucket]
    per_second: float
    window: int
    complete_since: datetime | None
    taken_at: datetime = field(default_factory=utcnow)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty list."""
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def _duration(row: object) -> float | None:
    started, finished = getattr(row, "started_at", None), getattr(row, "finished_at", None)
    if started is None or finished is None:
        return None
    elapsed: float = (finished - started).total_seconds()
    return max(0.0, elapsed)


def compute_snapshot(store: Store, *, window: int = WINDOW, now: datetime | None = None) -> MetricsSnapshot:
    now = now or utcnow()

    snapshot = store.status_snapshot(window=window)
    counts, success_rows, failed_rows = snapshot.counts, snapshot.succeeded, snapshot.failed
    finished = counts[TaskStatus.SUCCESS.value] + counts[TaskStatus.FAILED.value]

    by_name: dict[str, list[float]] = {}
    for row in success_rows:
        duration = _duration(row)
        if duration is not None:
            by_name.setdefault(row.name, []).append(duration)
    all_durations = [d for values in by_name.values() for d in values]
    durations = []
    for name, values in sorted(by_name.items()):
        values.sort()
        durations.append(DurationStats(name, len(values), percentile(values, 0.50), percentile(values, 0.95)))

    # A full window may not reach back THROUGHPUT_MINUTES: say from when the buckets are complete.
    complete_since = None
    for rows in (success_rows, failed_rows):
        if len(rows) >= window:
            oldest = min((r.finished_at for r in rows if r.finished_at is not None), default=None)
            if oldest is not None and (complete_since is None or oldest > complete_since):
                complete_since = oldest
    start = (now - timedelta(minutes=THROUGHPUT_MINUTES - 1)).replace(second=0, microsecond=0)
    buckets = {start + timedelta(minutes=i): [0, 0] for i in range(THROUGHPUT_MINUTES)}
    for index, rows in enumerate((success_rows, failed_rows)):
        for row in rows:
            if row.finished_at is not None and row.finished_at >= start:
                minute = row.finished_at.replace(second=0, microsecond=0)
                if minute in buckets:
                    buckets[minute][index] += 1
    throughput = [MinuteBucket(minute, s, f) for minute, (s, f) in buckets.items()]

    recent_start = now - timedelta(seconds=60)
    if complete_since is not None and complete_since > recent_start:
        span = max(1.0, (now - complete_since).total_seconds())
        recent = sum(
            1 for rows in (success_rows, failed_rows) for r in rows if r.finished_at and r.finished_at >= complete_since
        )
    else:
        span = 60.0
        recent = sum(
            1 for rows in (success_rows, failed_rows) for r in rows if r.finished_at and r.finished_at >= recent_start
        )
    return MetricsSnapshot(
        counts=counts,
        success_rate=None if not finished else counts[TaskStatus.SUCCESS.value] / finished,
        avg_duration_seconds=sum(all_durations) / len(all_durations) if all_durations else None,
        durations=durations,
        throughput=throughput,
        per_second=recent / span,
        window=window,
        complete_since=complete_since,
        taken_at=now,
    )


class Insights:
    """The snapshot, cached for `ttl` seconds and computed by one caller at a time (thread-safe).

    A caller may pass a `mark` (how many tasks its process has enqueued so far): a cached
    snapshot taken at another mark is not used, so counts never hide a task added before.
    """

    def __init__(self, store: Callable[[], Store], *, ttl: float = 2.0, window: int = WINDOW) -> None:
        self._store = store
        self._ttl = ttl
        self._window = window
        self._lock = threading.Lock()
        self._cached: tuple[float, int | None, MetricsSnapshot] | None = None

    def holds(self, mark: int) -> bool:
        """Whether a call to snapshot(mark) now would answer from the cache."""
        cached = self._cached
        return cached is not None and cached[1] == mark and time.monotonic() - cached[0] < self._ttl

    def snapshot(self, mark: int | None = None) -> MetricsSnapshot:
        """The cached snapshot if fresh (and taken at `mark`, when given), else a new one."""
        with self._lock:
            cached = self._cached
            if cached is not None and time.monotonic() - cached[0] < self._ttl and mark in (None, cached[1]):
                return cached[2]
            snapshot = compute_snapshot(self._store(), window=self._window)
            self._cached = (time.monotonic(), mark, snapshot)
            return snapshot

    def invalidate(self) -> None:
        with self._lock:
            self._cached = None


class TaskflowCollector(Collector):
    """Prometheus view of the snapshot; registered on a registry of its own, never the global one."""

    def __init__(self, insights: Insights, events: EventBus | None = None) -> None:
        self._insights = insights
        self._events = events

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        snapshot = self._insights.snapshot()
        tasks = GaugeMetricFamily("taskflow_tasks", "Tasks in the store by status.", labels=["status"])
        for status, count in snapshot.counts.items():
            tasks.add_metric([status], count)
        yield tasks
        if snapshot.success_rate is not None:
            yield GaugeMetricFamily(
                "taskflow_success_ratio",
                "Successful tasks over finished tasks (success + failed).",
                value=snapshot.success_rate,
            )
        yield GaugeMetricFamily(
            "taskflow_finished_per_second", "Tasks finished per second, recently.", value=snapshot.per_second
        )
        durations = GaugeMetricFamily(
            "taskflow_task_duration_seconds",
            f"Duration quantiles of the newest {snapshot.window} successful tasks, by task name.",
            labels=["task", "quantile"],
        )
        for stats in snapshot.durations:
            durations.add_metric([stats.name, "0.5"], stats.p50)
            durations.add_metric([stats.name, "0.95"], stats.p95)
        yield durations
        if self._events is not None:
            yield CounterMetricFamily(
                "taskflow_live_events_dropped",
                "Live task events dropped because a subscriber (a dashboard's stream) fell behind.",
                value=self._events.dropped_total,
            )
            yield CounterMetricFamily(
                "taskflow_remote_events_rejected",
                "Task events from Redis dropped because they were malformed.",
                value=self._events.rejected_total,
            )


def prometheus_registry(
    insights: Insights, events: EventBus | None = None, collectors: Iterable[Collector] = ()
) -> CollectorRegistry:
    """The store's view, plus `collectors` (the manager's counters and histograms)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TaskflowCollector(insights, events))
    for collector in collectors:
        registry.register(collector)
    return registry


def prometheus_text(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
