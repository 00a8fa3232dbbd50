"""What the priority queue costs a task that sets no priority: the runner's JobQueue against the
plain deque it replaced.

    python -m bench.priority_bench [--jobs 100000] [--rounds 5]

Each round pushes `--jobs` jobs and pops them all, through a deque (append/popleft, the
baseline) and through JobQueue, every job at the default priority, and then through JobQueue
with mixed priorities; the three in alternating order. Prints nanoseconds per job (median of
the rounds) and the ratio to the deque. A drained no-op task costs tens of microseconds (see
"Request throughput and the drain" in README.md), so the difference per job is what to weigh.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import deque
from dataclasses import dataclass

from app.taskflow.job_queue import JobQueue


@dataclass
class FakeJob:
    priority: int


def deque_ns(jobs: list[FakeJob]) -> float:
    queue: deque[FakeJob] = deque()
    start = time.perf_counter_ns()
    for job in jobs:
        queue.append(job)
    while queue:
        queue.popleft()
    return (time.perf_counter_ns() - start) / len(jobs)


def job_queue_ns(jobs: list[FakeJob]) -> float:
    queue: JobQueue[FakeJob] = JobQueue()
    start = time.perf_counter_ns()
    for job in jobs:
        queue.push(job)
    while queue:
        queue.pop()
    return (time.perf_counter_ns() - start) / len(jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    default = [FakeJob(priority=0) for _ in range(options.jobs)]
    mixed = [FakeJob(priority=n % 21 - 10) for n in range(options.jobs)]
    plain: list[float] = []
    same: list[float] = []
    varied: list[float] = []
    for _ in range(options.rounds):
        plain.append(deque_ns(default))
        same.append(job_queue_ns(default))
        varied.append(job_queue_ns(mixed))
    base = statistics.median(plain)
    print(
        f"runner queue, {options.jobs} jobs, median of {options.rounds} rounds: deque {base:.0f} ns/job | "
        f"JobQueue default priority {statistics.median(same):.0f} ns/job, ratio {statistics.median(same) / base:.2f} | "
        f"mixed priorities {statistics.median(varied):.0f} ns/job, ratio {statistics.median(varied) / base:.2f}"
    )


if __name__ == "__main__":
    main()
