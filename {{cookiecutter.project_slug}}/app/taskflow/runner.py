"""The runner: claim -> run under the policy -> record. The one way a task starts running.

A fixed set of worker coroutines takes jobs from one queue, so concurrency is bounded and the
tasks of one request never wait for each other. Async tasks run on the event loop; sync tasks
run in a bounded thread pool (their own limiter, separate from FastAPI's).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import time
import traceback
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from pydantic_core import to_jsonable_python

from . import arguments as argument_codec
from .context import TaskContext, call_bound
from .events import EventBus, TaskEvent
from .hooks import Hooks, TaskOutcome
from .job_queue import JobQueue
from .models import TaskStatus, utcnow
from .policy import TaskCancelled, TaskTimeout
from .process_executor import ProcessPool
from .registry import TaskSpec
from .store import Finish, Progress
from .task_metrics import TaskMetrics
from .writer import Writer

if TYPE_CHECKING:
    from .tracing import TaskTracer

logger = logging.getLogger("taskflow.runner")

MAX_RESULT_CHARS = 65_536
MAX_TRACEBACK_CHARS = 20_000

# Claiming ahead. A worker with a backlog behind it claims its next few jobs while it runs the
# current one, so their claims ride in the writer's next flush instead of the worker waiting for
# a flush per job (with a backlog of tiny tasks the loop and the database otherwise take turns,
# each idle half the time). Only for tasks that typically finish within AHEAD_BELOW seconds: a
# job claimed ahead shows RUNNING while it waits for the worker's few jobs before it.
AHEAD = 8
AHEAD_BELOW = 0.002

# A worker that has run this many jobs in a row without the event loop getting a turn (short
# async tasks never suspend) yields once, so requests, the writer and the heartbeats run
# meanwhile. While it yields, the other workers leave the queue to it (see _work): otherwise
# every worker woken for the backlog ran its own 32 jobs in the same loop turn.
YIELD_EVERY = 32

# The `taskflow.outcome` of an attempt's span, by the status recorded.
_TRACE_OUTCOME = {
    TaskStatus.SUCCESS: "succeeded",
    TaskStatus.FAILED: "failed",
    TaskStatus.PENDING: "retrying",
    TaskStatus.CANCELLED: "cancelled",
}

# A member's .value is a descriptor call; a dict lookup is a tenth of it (read twice a task).
_VALUE = {status: status.value for status in TaskStatus}


@dataclass(eq=False)
class Job:
    """A task this instance owns and will run (or is waiting to run)."""

    task_id: str
    spec: TaskSpec
    arguments: argument_codec.JSONArguments
    not_before: datetime | None = None
    cancelled: bool = False
    # Failed attempts retried so far (from the row after a recovery): what the retry policy counts.
    retries_used: int = 0
    # The contextvars of the code that enqueued it (a request's): each attempt runs in a copy.
    # None for a task recovered from the store: it runs with an empty context.
    context: contextvars.Context | None = None
    # When it was recorded (for the queue-wait histogram; a delay or retry counts from not_before).
    enqueued_at: datetime | None = None
    # The enqueue's span (an OpenTelemetry SpanContext) when tracing is on: attempts link to it.
    trace_link: Any = None
    # The attempt its row is RUNNING in already, claimed with a batch of ownerless rows
    # (Store.claim_ownerless): it starts without a claim of its own.
    claimed: int | None = None
    # Started before lower ones waiting here with it (TaskOptions.priority, or the enqueue's).
    priority: int = 0


@dataclass(eq=False)
class _Running:
    job: Job
    context: TaskContext
    task: asyncio.Task[Any] | None = None
    cancelled_by_user: bool = False
    span: Any = None  # the attempt's OpenTelemetry span, when tracing is on


class Runner:
    def __init__(
        self,
        *,
        writer: Writer,
        events: EventBus,
        owner: str,
        concurrency: int,
        threads: int,
        processes: ProcessPool,
        hooks: Hooks | None = None,
        metrics: TaskMetrics | None = None,
        tracer: TaskTracer | None = None,
    ) -> None:
        self._writer = writer
        self._events = events
        self._hooks = hooks or Hooks()
        self._metrics = metrics or TaskMetrics()
        self._tracer = tracer
        self._owner = owner
        self._concurrency = concurrency
        self._limiter = anyio.CapacityLimiter(threads)
        self._processes = processes
        # Jobs ready to start (highest priority first, see job_queue.py), and the workers asleep
        # waiting for one. Not an asyncio.Queue: it wakes a worker per job put, and a burst of
        # short jobs (one per request served in a loop turn) then cost a future and a task step
        # each. Here a woken worker runs queued short jobs one after another, and wakes the next
        # sleeper while any wait.
        self._jobs: JobQueue[Job] = JobQueue()
        self._sleepers: deque[asyncio.Future[None]] = deque()
        self._waking = False  # a sleeper was woken and has not looked at the jobs yet
        self._pausing = 0  # workers yielding the loop a turn mid-backlog (YIELD_EVERY)
        self._workers: list[asyncio.Task[None]] = []
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._waiting: dict[str, Job] = {}
        self._running: dict[str, _Running] = {}
        self._stopping = False
        self._idle = asyncio.Event()
        self._idle.set()
        # Typical run time of each task name (seconds, moving average): decides claiming ahead.
        self._typical: dict[str, float] = {}
        # Workers waiting for the queue (or woken by it and not yet running).
        self._idle_workers = 0
        # Set once fewer than _room_below jobs are due (wait_for_room); 0: nobody waits.
        self._room = asyncio.Event()
        self._room_below = 0
        # Jobs that ended here so far (ran, failed, or were dropped), and an event set at each:
        # wait_for_end. Counted, not read off `due`: jobs submitted meanwhile would hide an end.
        self.ended = 0
        self._an_end = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._work(), name=f"taskflow-worker-{n}") for n in range(self._concurrency)
        ]

    @property
    def active(self) -> int:
        """Jobs queued, waiting for a delay, or running here."""
        return len(self._waiting) + len(self._running)

    @property
    def due(self) -> int:
        """Jobs queued or running here: `active` less those waiting for a delay to pass."""
        return len(self._waiting) + len(self._running) - len(self._timers)

    def room(self, depth: int) -> int:
        """How many more jobs to take in (a batch of ownerless rows, claimed RUNNING): enough to
        fill the free workers or, while every task run here so far is typically short, `depth`
        times the workers (they run in a blink; a shallower queue would have them wait for the
        next batch)."""
        if self._stopping:
            return 0
        short = bool(self._typical) and all(typical < AHEAD_BELOW for typical in self._typical.values())
        return self._concurrency * (depth if short else 1) - self.due

    def running_ids(self) -> list[str]:
        return list(self._running)

    def owns(self, task_id: str) -> bool:
        return task_id in self._running or task_id in self._waiting

    async def wait_for_room(self, below: int) -> None:
        """Return once fewer than `below` jobs are due here (queued or running); never while
        stopping (the caller bounds the wait)."""
        self._room_below = below
        try:
            while self.due >= below or self._stopping:
                self._room.clear()
                await self._room.wait()
        finally:
            self._room_below = 0

    async def wait_for_end(self, after: int) -> None:
        """Return once more than `after` jobs have ended here (`ended`): at once if some already have."""
        while self.ended <= after:
            self._an_end.clear()
            await self._an_end.wait()

    async def drain(self, timeout: float) -> bool:
        """Stop taking new work; wait up to `timeout` s for running tasks. True if all finished."""
        self._stopping = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        # Jobs not yet started stay PENDING in the database; the shutdown release hands them on.
        while self._jobs:
            job = self._jobs.pop()
            self._waiting.pop(job.task_id, None)
        self._waiting.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._running:
                    self._idle.clear()
                    await self._idle.wait()
        return not self._running

    async def stop(self) -> None:
        """Cancel whatever still runs (after drain) and the workers."""
        self._stopping = True
        for running in list(self._running.values()):
            running.context.request_cancel()
            if running.task is not None:
                running.task.cancel()
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._workers = []

    # -- submitting -----------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queue a job; one with `not_before` in the future waits on a timer first."""
        if self._stopping or job.cancelled:
            return
        self._waiting[job.task_id] = job
        delay = 0.0 if job.not_before is None else (job.not_before - utcnow()).total_seconds()
        if delay > 0:
            loop = asyncio.get_running_loop()
            self._timers[job.task_id] = loop.call_later(delay, self._release_timer, job)
        else:
            self._push(job)

    def submit_all(self, jobs: list[Job]) -> None:
        for job in jobs:
            self.submit(job)

    def _release_timer(self, job: Job) -> None:
        self._timers.pop(job.task_id, None)
        if not self._stopping:
            self._push(job)

    def _push(self, job: Job) -> None:
        self._jobs.push(job)
        # A job that is not typically short gets a worker of its own at once; a short one may
        # wait for a worker already woken (it runs the queued short jobs one after another).
        self._wake_sleeper(even_if_waking=not self._is_short(job.spec))

    def _wake_sleeper(self, *, even_if_waking: bool = False) -> None:
        if self._waking and not even_if_waking:
            return
        while self._sleepers:
            sleeper = self._sleepers.popleft()
            if not sleeper.done():
                sleeper.set_result(None)
                self._waking = True
                return

    def cancel(self, task_id: str) -> bool:
        """Cancel a job of this instance: drop it if waiting, cancel it if running. True if found."""
        job = self._waiting.pop(task_id, None)
        if job is not None:
            job.cancelled = True
            handle = self._timers.pop(task_id, None)
            if handle is not None:
                handle.cancel()
            return True
        running = self._running.get(task_id)
        if running is None:
            return False
        running.cancelled_by_user = True
        running.context.request_cancel()
        spec = running.job.spec
        if (spec.is_async or spec.in_process) and running.task is not None:
            running.task.cancel()  # a process task's worker is killed: a process can be stopped
        return True

    # -- running --------------------------------------------------------------------------------

    async def _work(self) -> None:
        worker = asyncio.current_task()  # asked once: each ask costs a system call
        loop = asyncio.get_running_loop()
        # Jobs this worker took from the queue to run next, each with its claim if sent ahead.
        ahead: deque[tuple[Job, asyncio.Future[int | None] | None]] = deque()
        in_a_row = 0  # jobs run since this worker last let the loop run something else
        while True:
            if in_a_row >= YIELD_EVERY:
                in_a_row = 0
                self._pausing += 1
                try:
                    await asyncio.sleep(0)
                finally:
                    self._pausing -= 1
                if self._jobs:
                    # A sleeper woken meanwhile went back to sleep: wake one again, so that one
                    # is on its way should the next job (say, one claimed ahead) block.
                    self._wake_sleeper()
            if ahead:
                job, claim = ahead.popleft()
            elif self._jobs and not self._pausing:
                # (While a worker yields mid-backlog, the queue waits for it: it is not blocked,
                # and it carries on after this loop turn. A worker blocked in a job does not
                # count as pausing, so the others still take the jobs behind it.)
                job, claim = self._jobs.pop(), None
                if self._jobs:
                    # More wait: a sleeper takes the next if this job keeps us (no job waits
                    # behind a busy worker while another is free).
                    self._wake_sleeper()
            else:
                sleeper = loop.create_future()
                self._sleepers.append(sleeper)
                self._idle_workers += 1
                try:
                    await sleeper
                finally:
                    self._idle_workers -= 1
                    self._waking = False
                in_a_row = 0
                continue
            in_a_row += 1
            try:
                # A job leaves _waiting only once it runs (or may not), so `active` never dips
                # to zero while a claim is in flight.
                if job.cancelled or self._waiting.get(job.task_id) is not job:
                    if claim is not None:
                        await self._settle_dropped(job, claim)
                    elif job.claimed is not None:
                        self._cancelled_before_start(job, job.claimed)
                    continue
                if not ahead and self._claims_ahead(job.spec):
                    self._take_ahead(ahead)
                await self._execute(job, worker, claim)
            except asyncio.CancelledError:
                raise
            except Exception:  # the runner's own bug must not kill a worker
                logger.exception("taskflow: internal error while running task %s", job.task_id)
            finally:
                self.ended += 1
                self._an_end.set()
                if not self._running:
                    self._idle.set()
                if self._room_below and self.due < self._room_below:
                    self._room.set()

    def _claims_ahead(self, spec: TaskSpec) -> bool:
        # Only when every worker is busy: a job an idle (or just woken) worker could start now
        # must not wait behind this one.
        return not self._idle_workers and bool(self._jobs) and self._is_short(spec)

    def _is_short(self, spec: TaskSpec) -> bool:
        """Typically done within AHEAD_BELOW (a name not yet run is not)."""
        return self._typical.get(spec.name, AHEAD_BELOW) < AHEAD_BELOW

    def _take_ahead(self, ahead: deque[tuple[Job, asyncio.Future[int | None] | None]]) -> None:
        while len(ahead) < AHEAD and not self._stopping:
            if not self._jobs:
                return
            job = self._jobs.pop()
            if job.cancelled or self._waiting.get(job.task_id) is not job:
                continue
            short = self._is_short(job.spec)
            if job.claimed is not None or self._writer.claims_at_once(job.task_id, short=short):
                ahead.append((job, None))  # its claim costs nothing when its turn comes
            elif short:
                ahead.append((job, self._writer.claim(job.task_id)))
            else:
                ahead.append((job, None))  # a longer task is claimed when it starts...
                return  # ...and nothing waits behind it claimed

    async def _settle_dropped(self, job: Job, claim: asyncio.Future[int | None]) -> None:
        """A job claimed ahead, then cancelled or dropped by the shutdown before it started."""
        attempt = await claim
        if attempt is not None:
            self._cancelled_before_start(job, attempt)

    def _cancelled_before_start(self, job: Job, attempt: int) -> None:
        """A claim won for a job that will not run: if a person cancelled it, its row (RUNNING)
        says CANCELLED; if the shutdown dropped it, the release makes it PENDING again."""
        if not job.cancelled or self._stopping:
            return
        context = TaskContext(task_id=job.task_id, name=job.spec.name, attempt=attempt, _on_progress=lambda _: None)
        error = TaskCancelled("cancelled before it started")
        self._record(job, context, utcnow(), time.perf_counter(), error=error, status=TaskStatus.CANCELLED)

    async def _execute(
        self, job: Job, worker: asyncio.Task[Any] | None, claim: asyncio.Future[int | None] | None = None
    ) -> None:
        try:
            if claim is not None:
                attempt = await claim
            elif job.claimed is not None:
                # Its batch's claim is for this attempt only: a retry claims its own.
                attempt, job.claimed = job.claimed, None
            else:
                # A row still held by the writer is claimed at once; a written one by the database.
                attempt = self._writer.claim_held(job.task_id, short=self._is_short(job.spec))
                if attempt is None:
                    attempt = await self._writer.claim(job.task_id)
        finally:
            if self._waiting.get(job.task_id) is job:
                del self._waiting[job.task_id]
        if attempt is None:
            # Cancelled, taken over, or never committed (a rolled-back transactional enqueue).
            return
        if job.cancelled:
            # Cancelled while its claim was on its way: the row says RUNNING, so say CANCELLED.
            self._cancelled_before_start(job, attempt)
            return
        if self._stopping:
            return  # shutting down: the row is released as PENDING, not started now
        spec = job.spec
        context = TaskContext(task_id=job.task_id, name=spec.name, attempt=attempt, _on_progress=self._report_progress)
        running = _Running(job=job, context=context)
        if self._tracer is not None:
            running.span = self._tracer.attempt(job.task_id, spec.name, attempt, job.trace_link)
        self._running[job.task_id] = running
        self._publish(job.task_id, job.spec.name, TaskStatus.RUNNING)
        started_at = utcnow()
        clock = time.perf_counter()
        due = job.not_before if job.not_before is not None else job.enqueued_at
        if due is not None:
            self._metrics.started(spec.name, (started_at - due).total_seconds())
        try:
            args, kwargs = spec.signature.load(spec.name, job.arguments)
            # The task runs inline in this worker (no task per job: it costs more than a no-op
            # task itself); cancelling one task cancels the worker while it awaits the task.
            running.task = worker
            result = await self._invoke(spec, args, kwargs, context, job.context, running.span, job.arguments)
        except asyncio.CancelledError:
            if not running.cancelled_by_user:
                raise  # shutdown: the row is released for recovery, not marked
            if running.task is not None:
                running.task.uncancel()
            self._record(job, context, started_at, clock, error=TaskCancelled("cancelled"), status=TaskStatus.CANCELLED)
        except TaskCancelled as exc:
            self._record(job, context, started_at, clock, error=exc, status=TaskStatus.CANCELLED)
        except Exception as exc:
            self._record_failure(job, context, started_at, clock, exc)
        else:
            self._record(job, context, started_at, clock, result=result, status=TaskStatus.SUCCESS)
        finally:
            self._running.pop(job.task_id, None)
            if running.span is not None and self._tracer is not None:
                self._tracer.finish(running.span, "interrupted")  # the shutdown cut it short
            took = time.perf_counter() - clock
            typical = self._typical.get(spec.name)
            self._typical[spec.name] = took if typical is None else typical + 0.2 * (took - typical)

    async def _invoke(
        self,
        spec: TaskSpec,
        args: list[Any],
        kwargs: dict[str, Any],
        context: TaskContext,
        enqueued_in: contextvars.Context | None,
        span: Any = None,
        stored: argument_codec.JSONArguments | None = None,
    ) -> Any:
        # A fresh copy per attempt: what one attempt sets is not seen by the next, and a sync
        # attempt abandoned by its timeout may still be inside its copy while the retry runs.
        run_in = enqueued_in.copy() if enqueued_in is not None else contextvars.Context()
        if span is not None and self._tracer is not None:
            run_in.run(self._tracer.activate, span)  # the task's own spans are the attempt's children
        if spec.is_async:
            call: Any = _in_context(run_in.run(call_bound, context, spec.func, args, kwargs), run_in.run)
        elif spec.in_process and stored is not None:
            # The worker validates the stored JSON itself (validated here too: a bad one fails early).
            call = self._processes.call(spec.func, spec.name, stored)
        else:
            call = anyio.to_thread.run_sync(
                functools.partial(run_in.run, call_bound, context, spec.func, args, kwargs),
                limiter=self._limiter,
                abandon_on_cancel=True,
            )
        if spec.timeout is None:
            return await call
        try:
            return await asyncio.wait_for(call, spec.timeout)
        except TimeoutError:
            context.request_cancel()  # a sync task keeps its thread: ask it to stop (a process one is killed)
            raise TaskTimeout(f"attempt exceeded the task's timeout of {spec.timeout:g}s") from None

    # -- recording ------------------------------------------------------------------------------

    def _record_failure(
        self, job: Job, context: TaskContext, started_at: datetime, clock: float, exc: Exception
    ) -> None:
        policy = job.spec.policy
        failures = job.retries_used + 1
        if not policy.should_retry(exc, failures) or self._stopping:
            self._record(job, context, started_at, clock, error=exc, status=TaskStatus.FAILED)
            return
        delay = policy.delay_after(exc, failures)
        next_run_at = utcnow() + timedelta(seconds=delay)
        job.retries_used = failures
        self._record(job, context, started_at, clock, error=exc, status=TaskStatus.PENDING, next_run_at=next_run_at)
        self._metrics.retried(job.spec.name)
        logger.info(
            "taskflow: %s %s attempt %d failed (%s); retrying in %.2fs",
            job.spec.name,
            job.task_id,
            context.attempt,
            type(exc).__name__,
            delay,
        )
        if job.spec.options.limited:
            return  # its retry waits for a slot: the next claim with limits gives the row up (store/limits.py)
        job.not_before = next_run_at
        self.submit(job)

    def _record(
        self,
        job: Job,
        context: TaskContext,
        started_at: datetime,
        clock: float,
        *,
        status: TaskStatus,
        result: Any = None,
        error: BaseException | None = None,
        next_run_at: datetime | None = None,
    ) -> None:
        now = utcnow()
        duration = time.perf_counter() - clock
        error_type = error_message = trace = None
        if error is not None:
            error_type = type(error).__name__
            error_message = str(error)[:MAX_TRACEBACK_CHARS]
            trace = "".join(traceback.format_exception(error))[-MAX_TRACEBACK_CHARS:]
        attempt_status = status if status is not TaskStatus.PENDING else TaskStatus.FAILED
        values = {
            "status": _VALUE[status],
            "finished_at": None if status is TaskStatus.PENDING else now,
            "next_run_at": next_run_at,
            "error_type": error_type,
            "error_message": error_message,
            "traceback": trace,
            "result": _encode_result(result) if status is TaskStatus.SUCCESS else None,
            "progress_done": context.progress_done,
            "progress_total": context.progress_total,
            "progress_message": context.progress_message,
            "retries_used": job.retries_used,
        }
        logs = context.logs
        if context.dropped_logs:
            logs = [
                *logs,
                {
                    "at": now.isoformat(),
                    "level": "WARNING",
                    "logger": "taskflow",
                    "message": f"{context.dropped_logs} more log records were not kept",
                },
            ]
        attempt_row = None
        if context.attempt > 1 or status is not TaskStatus.SUCCESS or logs:
            # A first attempt that simply succeeded needs no row of its own: the task row holds
            # its times, and the API shows it as attempt 1. That halves the writes of most tasks.
            attempt_row = {
                "task_id": job.task_id,
                "number": context.attempt,
                "owner": self._owner,
                "status": _VALUE[attempt_status],
                "started_at": started_at,
                "finished_at": now,
                "duration": duration,
                "error_type": error_type,
                "error_message": error_message,
                "traceback": trace,
                "logs": argument_codec.encode_logs(logs) if logs else None,
            }
        self._writer.finish(
            Finish(task_id=job.task_id, attempt=context.attempt, values=values, attempt_row=attempt_row)
        )
        self._publish(job.task_id, job.spec.name, status, context)
        self._observe(job, context, status, duration, error)

    def _observe(
        self, job: Job, context: TaskContext, status: TaskStatus, duration: float, error: BaseException | None
    ) -> None:
        """Metrics and hooks of a recorded outcome."""
        name = job.spec.name
        running = self._running.get(job.task_id)
        if running is not None:  # else it was cancelled before it started: it never ran
            self._metrics.ran(name, duration)
            if running.span is not None and self._tracer is not None:
                self._tracer.finish(running.span, _TRACE_OUTCOME[status], error)
                running.span = None
        if status is TaskStatus.SUCCESS:
            self._metrics.ended(name, "succeeded")
            self._emit("succeeded", job, context)
        elif status is TaskStatus.CANCELLED:
            self._metrics.ended(name, "cancelled")
        elif status is TaskStatus.FAILED:
            self._metrics.ended(name, "failed")
            self._emit("failed", job, context, error)
            self._emit("gave_up", job, context, error)
        elif status is TaskStatus.PENDING:
            self._emit("failed", job, context, error, will_retry=True)

    def _emit(
        self,
        event: str,
        job: Job,
        context: TaskContext,
        error: BaseException | None = None,
        *,
        will_retry: bool = False,
    ) -> None:
        if not self._hooks.wants(event, job.spec.name):
            return
        outcome = TaskOutcome(
            event=event,
            task_id=job.task_id,
            task_name=job.spec.name,
            attempt=context.attempt,
            error=error,
            error_type=None if error is None else type(error).__name__,
            error_message=None if error is None else str(error),
            will_retry=will_retry,
        )
        self._hooks.emit(outcome, job.context)

    def _report_progress(self, context: TaskContext) -> None:
        values = {
            "progress_done": context.progress_done,
            "progress_total": context.progress_total,
            "progress_message": context.progress_message,
        }
        self._writer.progress(Progress(task_id=context.task_id, attempt=context.attempt, values=values))
        self._publish(context.task_id, context.name, TaskStatus.RUNNING, context)

    def _publish(self, task_id: str, name: str, status: TaskStatus, context: TaskContext | None = None) -> None:
        if not self._events.listening:
            return
        self._events.publish(
            TaskEvent(
                task_id=task_id,
                name=name,
                status=_VALUE[status],
                progress_done=context.progress_done if context else None,
                progress_total=context.progress_total if context else None,
                progress_message=context.progress_message if context else None,
            )
        )


@types.coroutine
def _in_context(coroutine: Coroutine[Any, Any, Any], run: Callable[..., Any]) -> Generator[Any, Any, Any]:
    """Await `coroutine` with each of its steps run by `run` (a context's run method).

    What a task of its own created with that context would do, without a task per job (which
    costs more than a no-op task itself): the worker that awaits this stays the one that is
    cancelled, and every step of the coroutine sees the enqueuing request's context variables.
    """
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            yielded = run(coroutine.send, value) if error is None else run(coroutine.throw, error)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        try:
            value = yield yielded
        except GeneratorExit:
            run(coroutine.close)
            raise
        except BaseException as exc:  # a cancellation, passed on to the task's own code
            error = exc


def _encode_result(result: Any) -> str | None:
    if result is None:
        return None
    try:
        text = argument_codec.encode_value(to_jsonable_python(result))
    except Exception:
        text = argument_codec.encode_value({"unserialisable": type(result).__name__})
    if len(text) > MAX_RESULT_CHARS:
        text = argument_codec.encode_value({"truncated": True, "prefix": text[:MAX_RESULT_CHARS]})
    return text
