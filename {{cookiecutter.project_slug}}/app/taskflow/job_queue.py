"""The runner's queue of jobs ready to start: highest priority first, enqueue order within one.

One first-in-first-out lane per priority that has jobs waiting, and a heap of those priorities
(negated: heapq keeps the smallest first). Push and pop touch the heap only when a lane opens or
empties, so with every job at the default priority the queue is one lane, and a job costs a
dict lookup on top of what a plain deque cost (bench/priority_bench.py). A heap of the jobs
themselves would sift tuples log(n) deep on every pop, priorities or not.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Generic, Protocol, TypeVar


class Prioritised(Protocol):
    @property
    def priority(self) -> int: ...


J = TypeVar("J", bound=Prioritised)


class JobQueue(Generic[J]):
    def __init__(self) -> None:
        self._lanes: dict[int, deque[J]] = {}
        self._priorities: list[int] = []  # a heap of the negated priorities that have a lane
        self._size = 0

    def push(self, job: J) -> None:
        lane = self._lanes.get(job.priority)
        if lane is None:
            lane = self._lanes[job.priority] = deque()
            heapq.heappush(self._priorities, -job.priority)
        lane.append(job)
        self._size += 1

    def pop(self) -> J:
        """The job to start next; IndexError when empty (as deque.popleft)."""
        if not self._size:
            raise IndexError("pop from an empty JobQueue")
        priority = -self._priorities[0]
        lane = self._lanes[priority]
        job = lane.popleft()
        self._size -= 1
        if not lane:
            del self._lanes[priority]
            heapq.heappop(self._priorities)
        return job

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0
