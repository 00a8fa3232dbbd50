"""Geometry for the dashboard's inline SVG charts: numbers only; the markup is in the template."""

from __future__ import annotations

from dataclasses import dataclass

from ..metrics import MetricsSnapshot

WIDTH = 600
HEIGHT = 120


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    y: float
    height: float
    label: str


@dataclass(frozen=True)
class ThroughputChart:
    success: list[Bar]
    failed: list[Bar]
    peak: int
    width: int = WIDTH
    height: int = HEIGHT


@dataclass(frozen=True)
class DurationRow:
    name: str
    y: float
    p50_width: float
    p95_width: float
    p50: float
    p95: float
    count: int


@dataclass(frozen=True)
class DurationChart:
    rows: list[DurationRow]
    longest: float
    width: int = WIDTH
    height: int = 0
    label_width: int = 160


def throughput_chart(snapshot: MetricsSnapshot) -> ThroughputChart:
    """Tasks finished per minute: success stacked under failed, one bar per minute."""
    buckets = snapshot.throughput
    peak = max((b.success + b.failed for b in buckets), default=0)
    scale = (HEIGHT - 10) / peak if peak else 0.0
    slot = WIDTH / max(1, len(buckets))
    success, failed = [], []
    for index, bucket in enumerate(buckets):
        x = index * slot + 1
        ok_height = bucket.success * scale
        failed_height = bucket.failed * scale
        minute = bucket.start.strftime("%H:%M")
        success.append(Bar(x, slot - 2, HEIGHT - ok_height, ok_height, f"{minute}: {bucket.success} succeeded"))
        failed.append(
            Bar(x, slot - 2, HEIGHT - ok_height - failed_height, failed_height, f"{minute}: {bucket.failed} failed")
        )
    return ThroughputChart(success=success, failed=failed, peak=peak)


def duration_chart(snapshot: MetricsSnapshot, *, limit: int = 12) -> DurationChart:
    """p50 and p95 duration per task name, on one shared scale."""
    stats = sorted(snapshot.durations, key=lambda d: d.p95, reverse=True)[:limit]
    longest = max((d.p95 for d in stats), default=0.0)
    chart = DurationChart(rows=[], longest=longest)
    usable = WIDTH - chart.label_width - 120  # room for the "p50 / p95" text after the longest bar
    scale = usable / longest if longest else 0.0
    rows = [
        DurationRow(d.name, index * 22, max(1.0, d.p50 * scale), max(1.0, d.p95 * scale), d.p50, d.p95, d.count)
        for index, d in enumerate(stats)
    ]
    return DurationChart(rows=rows, longest=longest, height=max(22, len(rows) * 22))
