"""Retention: finished tasks older than `keep_finished` are deleted, with their attempts.

Every row a task system writes stays until someone deletes it, and on SQLite a long history
also makes each new row dearer to write (bench/writer_bench.py). With `keep_finished` set, each
instance sweeps at start and then every SWEEP_EVERY seconds; sweeps on several instances at
once only delete the same rows twice (the second finds them gone). Off (None) by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from ._loops import finished_in_thread
from .models import utcnow
from .store import Store

logger = logging.getLogger("taskflow.retention")

SWEEP_EVERY = 60.0
# Rows per transaction. On SQLite every write of the process waits while one runs (a persisted
# enqueue among them), so each stays short; a sweep goes on while chunks come back full.
CHUNK = 500
# A first sweep of a long history is spread over several periods instead of one long burst.
MAX_CHUNKS_PER_SWEEP = 100


class Retention:
    def __init__(self, store: Store, keep_finished: float | None, *, every: float = SWEEP_EVERY) -> None:
        self._store = store
        self._keep = None if keep_finished is None else timedelta(seconds=keep_finished)
        self._every = every
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._keep is not None:
            self._task = asyncio.create_task(self._loop(), name="taskflow-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:
                # The next sweep tries again; nothing is lost by waiting.
                logger.warning("taskflow: deleting old finished tasks failed (retried in %.0fs): %s", self._every, exc)
            await asyncio.sleep(self._every)

    async def sweep(self) -> int:
        """Delete finished tasks older than the retention period; returns how many went."""
        if self._keep is None:
            return 0
        cutoff = utcnow() - self._keep
        deleted = 0
        for _ in range(MAX_CHUNKS_PER_SWEEP):
            count = await finished_in_thread(self._store.delete_finished_before, cutoff, limit=CHUNK)
            deleted += count
            if count < CHUNK:
                break
        if deleted:
            logger.info("taskflow: deleted %d task(s) that finished before %s", deleted, cutoff.isoformat())
        return deleted
