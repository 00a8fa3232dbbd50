"""Group commit for the task lifecycle: writes queue up while one flush runs, then go together.

Requests never wait for it. A task's whole life can fit in one flush: a new task's claim,
progress and outcome are folded into its still-unwritten insert, so a short task costs one
INSERT. A persisted task is held the same way once the store made it durable outside the
task table (SQLite's intake file; see store/__init__.py for every way a row goes in), and the
store drops that copy once the row's insert commits.
If the database is unreachable, the batch is kept and retried with backoff: nothing is lost.
If it refuses a batch, each write is tried alone, and a write it still refuses is stored
without its texts (an error says why): the writer never stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError

from ._loops import call_in_loop
from .models import TaskStatus, utcnow
from .storable import TextLimit, storable_text
from .store import Batch, BatchResult, Finish, Progress, Store

logger = logging.getLogger("taskflow.writer")

# Read per task: an enum member's .value is a descriptor call each time.
_PENDING = TaskStatus.PENDING.value
_RUNNING = TaskStatus.RUNNING.value


class Writer:
    def __init__(self, store: Store, *, owner: str, hold_seconds: float = 0.2, flush_interval: float = 0.05) -> None:
        self._store = store
        self._owner = owner
        self._hold = hold_seconds
        # Outcomes and progress wait up to this long so that one transaction carries many; a
        # claim (a task waiting to start) or flushed() does not wait.
        self._interval = flush_interval
        self._last_flush = 0.0
        self._urgent = asyncio.Event()
        self._lock = threading.Lock()
        self._batch = Batch()
        self._claim_waiters: dict[str, list[asyncio.Future[int | None]]] = {}
        # New rows not written yet (non-persisted, or persisted ones the store keeps durable). Their
        # claim, progress and outcome fold into them; they are written once finished, or
        # `hold_seconds` after they arrived (a persisted one that is not short: when claimed).
        self._held: dict[str, dict[str, Any]] = {}
        # When each held row arrived (apart from the row: no tuple per task for the GC to walk).
        self._held_since: dict[str, float] = {}
        self._progress: dict[str, Progress] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._force = False
        self._closing = False
        # Batches taken and batches written so far: flushed() waits for the one that holds its writes.
        self._taken = 0
        self._applied = 0
        self._applied_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="taskflow-writer")

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="taskflow-writer")

    async def close(self) -> None:
        """Write everything queued so far, then stop."""
        self._closing = True
        self._force = True
        self._wake.set()
        self._urgent.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    def abandon(self) -> None:
        """Stop without writing what is left (shutdown gave up on an unreachable database)."""
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def flushed(self) -> None:
        """Wait until everything queued before this call (held rows included) is in the database.

        Waits for one flush that takes it all, not for a quiet moment, so it returns under
        continuous writes too.
        """
        with self._lock:
            pending = bool(self._batch or self._held or self._progress)
            target = self._taken + 1 if pending else self._taken
        if pending:
            self._force = True
            self._wake.set()
            self._urgent.set()
        while self._applied < target:
            self._applied_event.clear()
            await self._applied_event.wait()

    # -- queueing (thread-safe) -----------------------------------------------------------------

    def insert(self, row: dict[str, Any]) -> None:
        """Hold a new row (store.enqueue hands it over) for the next batch."""
        with self._lock:
            first = not self._held
            self._held[row["id"]] = row
            self._held_since[row["id"]] = time.monotonic()
        if first:
            self._signal()  # the writer must learn when this row is due

    def progress(self, item: Progress) -> None:
        with self._lock:
            held = self._held.get(item.task_id)
            if held is not None and held["status"] == _RUNNING:
                held.update(item.values)
                return
            self._progress[item.task_id] = item
        self._signal()

    def finish(self, item: Finish) -> None:
        with self._lock:
            # The first write into an empty batch wakes the writer; it takes the rest with it.
            wake = not self._batch
            self._progress.pop(item.task_id, None)
            row = self._held.get(item.task_id)
            if row is not None and row["status"] == _RUNNING and row["attempt"] == item.attempt:
                row.update(item.values, updated_at=utcnow())
                if item.attempt_row is not None:
                    self._batch.attempt_rows.append(item.attempt_row)
                if row["status"] != _PENDING:
                    # Finished: the whole life of the task goes in as one INSERT. (A retry stays
                    # held and PENDING; its next claim folds in as well.)
                    del self._held[item.task_id], self._held_since[item.task_id]
                    self._batch.inserts.append(row)
            else:
                self._batch.finishes.append(item)
        if wake:
            self._signal()

    def claims_at_once(self, task_id: str, *, short: bool) -> bool:
        """True while claim_held would claim the task at once (its row waits here unwritten)."""
        row = self._held.get(task_id)
        return row is not None and (short or not row["persist"])

    def claim_held(self, task_id: str, *, short: bool) -> int | None:
        """Claim a task whose row is still held (not written yet): its attempt number, at once.

        A persisted row (durable outside the table) is claimed here only for a task that is typically short:
        it is then written once, finished. Any other persisted task must be RUNNING in the
        database before it starts, so a crash while it runs is counted (and a task that keeps
        killing its process is quarantined); a crashing task never finishes, so it never counts
        as short. None when the row cannot be claimed here: claim() it instead.
        """
        with self._lock:
            row = self._held.get(task_id)
            if row is None or row["status"] != _PENDING or (row["persist"] and not short):
                return None
            now = utcnow()
            attempt: int = row["attempt"] + 1
            row.update(status=_RUNNING, attempt=attempt, started_at=now, updated_at=now, next_run_at=None)
            return attempt

    def claim(self, task_id: str) -> asyncio.Future[int | None]:
        """Move a written task to RUNNING in the next flush; the future gives the attempt number,
        or None if it may not run. (A row still held is claimed by claim_held, at once.)"""
        assert self._loop is not None
        future: asyncio.Future[int | None] = self._loop.create_future()
        with self._lock:
            row = self._held.get(task_id)
            if row is not None and row["status"] == _PENDING:
                # A persisted row not in the table yet: it moves to the task table as RUNNING,
                # and the task starts once that is committed (a crash while it runs is counted).
                del self._held[task_id], self._held_since[task_id]
                now = utcnow()
                attempt = row["attempt"] + 1
                row.update(status=_RUNNING, attempt=attempt, started_at=now, updated_at=now, next_run_at=None)
                self._batch.inserts.append(row)
            else:
                self._batch.claims.append(task_id)
            self._claim_waiters.setdefault(task_id, []).append(future)
        self._signal(urgent=True)
        return future

    def _signal(self, urgent: bool = False) -> None:
        call_in_loop(self._loop, self._wake_up, urgent)

    def _wake_up(self, urgent: bool) -> None:
        self._wake.set()
        if urgent:
            self._urgent.set()

    # -- flushing ---------------------------------------------------------------------------------

    def _take(self) -> tuple[Batch, dict[str, list[asyncio.Future[int | None]]], float | None]:
        """The next batch, its claim waiters, and how long until the oldest held row is due."""
        now = time.monotonic()
        with self._lock:
            batch, self._batch = self._batch, Batch()
            due_before = float("inf") if self._force else now - self._hold
            self._force = False
            next_due: float | None = None
            due: list[str] = []
            # Rows are held in arrival order, so the due ones come first: stop at the first that
            # is not (a backlog of thousands is not walked at every flush).
            for task_id, since in self._held_since.items():
                if since > due_before:
                    next_due = since
                    break
                due.append(task_id)
            for task_id in due:
                # Written while still pending or running, so the dashboard shows it.
                del self._held_since[task_id]
                batch.inserts.append(self._held.pop(task_id))
            batch.progress = list(self._progress.values())
            self._progress = {}
            waiters, self._claim_waiters = self._claim_waiters, {}
            if batch:
                self._taken += 1
        wait = None if next_due is None else max(0.0, next_due + self._hold - now)
        return batch, waiters, wait

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            pause = self._last_flush + self._interval - time.monotonic()
            if pause > 0 and not self._force and not self._closing and not self._urgent.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await self._urgent.wait()
            self._urgent.clear()
            batch, waiters, wait = self._take()
            if not batch:
                if wait is None and self._closing:
                    return
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                continue
            self._last_flush = time.monotonic()
            try:
                result = await self._apply_until_written(loop, batch)
            except Exception:
                # Never reached by design; if it were, the writer must live on and flushed() return.
                logger.exception("taskflow: a batch of %d task writes failed unexpectedly", len(batch))
                result = BatchResult()
            self._applied += 1
            self._applied_event.set()
            for task_id in result.rejected:
                logger.warning(
                    "taskflow: the outcome of task %s was not recorded: another instance took it over "
                    "(its lease had expired)",
                    task_id,
                )
            for task_id, futures in waiters.items():
                attempt = result.claimed.get(task_id)
                for future in futures:
                    if not future.done():
                        future.set_result(attempt)

    async def _apply_until_written(self, loop: asyncio.AbstractEventLoop, batch: Batch) -> BatchResult:
        """Write a batch whatever happens: kept and retried while the database is unreachable
        or locked; written one write at a time if the database refuses it."""
        try:
            return await self._retry_while_unreachable(loop, batch)
        except Exception as exc:
            logger.warning(
                "taskflow: the database refused a batch of %d task writes (%s); writing them one by one",
                len(batch),
                _reason(exc),
            )
        result = BatchResult()
        for single in _singles(batch):
            partial = await self._apply_single(loop, single)
            result.claimed.update(partial.claimed)
            result.rejected.extend(partial.rejected)
        return result

    async def _retry_while_unreachable(self, loop: asyncio.AbstractEventLoop, batch: Batch) -> BatchResult:
        """Apply `batch`, retried with backoff while the database cannot be reached or is locked
        (nothing of it was written then); a refusal of its contents is raised."""
        delay = 0.05
        failures = 0
        while True:
            try:
                return await loop.run_in_executor(self._executor, self._apply, batch)
            except (OperationalError, InterfaceError) as exc:
                failures += 1
                logger.error(
                    "taskflow: cannot write %d task updates (try %d, next in %.1fs); they are kept: %s",
                    len(batch),
                    failures,
                    delay,
                    _reason(exc),
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _apply_single(self, loop: asyncio.AbstractEventLoop, single: Batch) -> BatchResult:
        """One write of a refused batch. If the database refuses it too, what can be stored is:
        the row and its status, with an error that says why its texts were not."""
        try:
            return await self._retry_while_unreachable(loop, single)
        except Exception as exc:
            refusal = exc
        bare = _without_texts(single, f"taskflow could not store this task's texts: {_reason(refusal)}")
        if bare is not None:
            try:
                result = await self._retry_while_unreachable(loop, bare)
            except Exception as exc:
                refusal = exc
            else:
                logger.error(
                    "taskflow: the database refused the texts of %s; stored it without them: %s",
                    _describe(single),
                    _reason(refusal),
                )
                return result
        logger.error("taskflow: the database refused %s; it was not stored: %s", _describe(single), _reason(refusal))
        return BatchResult()

    def _apply(self, batch: Batch) -> BatchResult:
        return self._store.apply(batch, owner=self._owner)


# The texts a write may carry besides the ones that identify its task (name, key, arguments).
_TEXT_COLUMNS = ("error_type", "error_message", "traceback", "result", "progress_message", "logs")


def _singles(batch: Batch) -> list[Batch]:
    """The writes of a batch one per batch, in the order apply_batch writes them."""
    return (
        [Batch(inserts=[row]) for row in batch.inserts]
        + [Batch(attempt_rows=[row]) for row in batch.attempt_rows]
        + [Batch(progress=[item]) for item in batch.progress]
        + [Batch(finishes=[item]) for item in batch.finishes]
        + [Batch(claims=[task_id]) for task_id in batch.claims]
    )


def _bare(values: dict[str, Any], note: str | None) -> dict[str, Any]:
    bare = {**values, **{column: None for column in _TEXT_COLUMNS if column in values}}
    if note is not None and "error_message" in values:
        bare["error_message"] = note
    return bare


def _without_texts(single: Batch, note: str) -> Batch | None:
    """A one-write batch without its texts (the error says why), or None if it has no texts."""
    if single.inserts:
        return Batch(inserts=[_bare(single.inserts[0], note)])
    if single.attempt_rows:
        return Batch(attempt_rows=[_bare(single.attempt_rows[0], note)])
    if single.progress:
        progress = single.progress[0]
        return Batch(progress=[Progress(progress.task_id, progress.attempt, _bare(progress.values, None))])
    if single.finishes:
        finish = single.finishes[0]
        attempt_row = None if finish.attempt_row is None else _bare(finish.attempt_row, note)
        return Batch(finishes=[Finish(finish.task_id, finish.attempt, _bare(finish.values, note), attempt_row)])
    return None


def _describe(single: Batch) -> str:
    if single.inserts:
        return f"the new row of task {single.inserts[0]['id']}"
    if single.attempt_rows:
        return f"an attempt of task {single.attempt_rows[0]['task_id']}"
    if single.progress:
        return f"the progress of task {single.progress[0].task_id}"
    if single.finishes:
        return f"the outcome of task {single.finishes[0].task_id}"
    return f"the claim of task {single.claims[0]}"


def _reason(error: BaseException) -> str:
    """The first line of the driver's error (SQLAlchemy's adds the statement and its values)."""
    lines = str(getattr(error, "orig", None) or error).splitlines()
    return storable_text(lines[0] if lines else type(error).__name__, TextLimit(500))
