"""The runner's queue of jobs ready to start: highest priority first, enqueue order within one.

A heap keyed (-priority, sequence): the sequence number keeps equal priorities first in, first
out, and makes every key unique so jobs themselves are never compared. When every job has the
default priority, each key is larger than all before it, so a push settles at once and the
queue costs what a plain deque did, plus one small tuple per job.
"""

from __future__ import annotations

import heapq
from itertools import count
from typing import Generic, Protocol, TypeVar


class Prioritised(Protocol):
    @property
    def priority(self) -> int: ...


J = TypeVar("J", bound=Prioritised)


class JobQueue(Generic[J]):
    def __init__(self) -> None:
        self._heap: list[tuple[int, int, J]] = []
        self._sequence = count()

    def push(self, job: J) -> None:
        heapq.heappush(self._heap, (-job.priority, next(self._sequence), job))

    def pop(self) -> J:
        """The job to start next; IndexError when empty (as deque.popleft)."""
        return heapq.heappop(self._heap)[2]

    def __len__(self) -> int:
        return len(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap)
