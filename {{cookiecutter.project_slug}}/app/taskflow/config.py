"""Manager-wide settings, checked once when a TaskManager is built or configured."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
class TaskflowConfig:
    """Manager-wide settings (each task's own options are on its @task)."""

    # None: an in-memory store (nothing survives the process). Else sqlite:///... or postgresql+psycopg://...
    database_url: str | None = None
    # Tasks running at once in this process, and threads for sync tasks among them. 0: enqueue
    # only (this process runs no task; worker processes on the same database run them).
    concurrency: int = 32
    threads: int = 16
    # Worker processes for executor="process" tasks at most (started when first needed).
    processes: int = field(default_factory=lambda: os.cpu_count() or 1)
    # How long an instance's claim on its tasks lasts without a heartbeat.
    lease_seconds: float = 30.0
    # Crash recoveries of one task before it is quarantined as FAILED.
    max_recoveries: int = 5
    # On shutdown, running tasks get this long to finish before they are cancelled and released.
    shutdown_timeout: float = 20.0
    # Control loop period: hand-over sweep and cross-instance cancel requests.
    poll_interval: float = 1.0
    # A task added in a request whose response never went out is started after this long.
    handoff_grace: float = 5.0
    # A persist=False task's row is written when it finishes, or after this many seconds if it
    # has not: short tasks then cost one INSERT, and the dashboard shows the rest within this.
    write_behind: float = 1.0
    # Finished tasks (success, failed, cancelled, interrupted) older than this many seconds are
    # deleted, with their attempts, at start and every minute. None keeps every row.
    keep_finished: float | None = None
    # Apply taskflow's pending migrations when the store opens (once across processes). False:
    # the start stops with one line naming `make migrate` unless the database is current.
    migrate_on_start: bool = True
    # Largest JSON size of one task argument; add_task refuses bigger ones with a TypeError.
    max_argument_bytes: int = 64 * 1024
    # Carry live events between instances, and count rate-limited starts there instead of in the
    # task database (optional).
    redis_url: str | None = None
    redis_channel: str = "taskflow:events"
    # The start of every key taskflow keeps in Redis (rate-limit windows: <prefix>rate:<task>).
    redis_prefix: str = "taskflow:"

    def __post_init__(self) -> None:
        problems = []
        if self.concurrency < 0:
            problems.append(f"concurrency must be >= 0 (0: enqueue only), got {self.concurrency!r}")
        for name in ("threads", "processes", "max_recoveries"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.lease_seconds < 1:
            problems.append(f"lease_seconds must be >= 1, got {self.lease_seconds!r}")
        for name in ("shutdown_timeout", "handoff_grace", "write_behind"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0 seconds, got {getattr(self, name)!r}")
        if self.keep_finished is not None and self.keep_finished <= 0:
            problems.append(
                f"keep_finished must be > 0 seconds (or None to keep every task), got {self.keep_finished!r}"
            )
        if self.max_argument_bytes < 1:
            problems.append(f"max_argument_bytes must be >= 1, got {self.max_argument_bytes!r}")
        if self.poll_interval <= 0:
            problems.append(f"poll_interval must be > 0 seconds, got {self.poll_interval!r}")
        if problems:
            raise ValueError("TaskManager: " + "; ".join(problems))

    @property
    def enqueue_only(self) -> bool:
        """This process records tasks and runs none (concurrency 0): worker processes run them."""
        return self.concurrency == 0
