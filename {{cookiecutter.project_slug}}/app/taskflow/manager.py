"""TaskManager: the registry, the store and the runner wired together; small on purpose."""

from __future__ import annotations

import asyncio
import contextvars
import enum
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, overload

from fastapi import BackgroundTasks, FastAPI

from . import arguments as argument_codec
from ._loops import call_in_loop
from .background import NO_OPTIONS, EnqueueOptions, ManagedBackgroundTasks, new_task_id
from .config import TaskflowConfig
from .events import EventBus, TaskEvent
from .hooks import Hook, Hooks, TaskOutcome
from .leases import new_owner_id
from .models import TaskStatus, new_task_row, utcnow
from .options import TaskOptions, check_limited_enqueue
from .policy import RetryPolicy
from .rates import RateWindows, RedisRateWindows
from .registry import Registry, TaskSpec, build_spec
from .runner import Job
from .runtime import Runtime
from .schedules import ScheduleSpec, build_schedule, set_paused
from .store import Store, open_store
from .task_metrics import TaskMetrics

if TYPE_CHECKING:
    from .tracing import TaskTracer

logger = logging.getLogger("taskflow")

# How much longer than write_behind a cancel of a task no table has yet waits for it (another
# instance may hold it, not yet written), and how often it looks.
UNWRITTEN_GRACE = 1.0
UNWRITTEN_POLL = 0.05

P = ParamSpec("P")
R = TypeVar("R")


class CancelOutcome(enum.StrEnum):
    CANCELLED = "cancelled"  # it was pending and will never run
    CANCELLING = "cancelling"  # it is running; async tasks stop now, sync tasks at their next check
    NOT_FOUND = "not_found"
    ALREADY_FINISHED = "already_finished"


class TaskNotFound(LookupError):
    pass


class TaskNotRetryable(ValueError):
    pass


class TaskManager:
    """Registers tasks, records them, runs them, and recovers them after restarts and crashes."""

    def __init__(
        self,
        snapshot_db: str | None = None,
        snapshot_interval: float = 30.0,
        **options: Any,
    ) -> None:
        # snapshot_db / snapshot_interval keep the reference library's constructor working: the
        # file becomes the SQLite store. Every transition is written as it happens, so there is
        # no snapshot cycle and the interval is accepted but unused.
        if snapshot_db is not None:
            options.setdefault("database_url", f"sqlite:///{snapshot_db}")
        self.snapshot_interval = snapshot_interval
        self.config = TaskflowConfig(**options)
        self.registry = Registry()
        self.schedules: dict[str, ScheduleSpec] = {}
        self.events = EventBus()
        self.hooks = Hooks()
        self.metrics = TaskMetrics()
        self.tracer: TaskTracer | None = None
        self.owner = new_owner_id()
        self._store: Store | None = None
        self._rate_windows: RedisRateWindows | None = None
        self._runtime: Runtime | None = None
        self._users = 0
        # Recorded jobs waiting for their request to hand them over, and since when.
        self._unhanded: dict[str, Job] = {}
        self._unhanded_since: dict[str, float] = {}
        self._unhanded_lock = threading.Lock()
        self.shutting_down = asyncio.Event()
        # Tasks this manager has recorded so far: the admin's metrics snapshot is stale once it moves.
        self.enqueued_total = 0
        self._told_not_running = False

    def configure(self, **options: Any) -> None:
        """Change settings before start (e.g. from the app's settings in create_app)."""
        if self._runtime is not None:
            raise RuntimeError("configure() must be called before the task manager starts")
        fields = {**self.config.__dict__, **options}
        self.config = TaskflowConfig(**fields)
        if self._store is not None:
            self._store.dispose()
            self._store = None
        if self._rate_windows is not None:
            self._rate_windows.close()
            self._rate_windows = None

    @property
    def store(self) -> Store:
        if self._store is None:
            store = open_store(self.config.database_url)
            try:
                # Only this process sees an in-memory store: its tables are always made here.
                if self.config.migrate_on_start or self.config.database_url is None:
                    store.create_tables()
                else:
                    store.check_schema()
            except BaseException:
                store.dispose()
                raise
            self._store = store
        return self._store

    @property
    def rate_windows(self) -> RateWindows | None:
        """Where rate limits count starts (rates.py): Redis when redis_url is set, else None (the
        task database, through the store)."""
        if self.config.redis_url is None:
            return None
        if self._rate_windows is None:
            self._rate_windows = RedisRateWindows(self.config.redis_url, prefix=self.config.redis_prefix)
        return self._rate_windows

    @property
    def running(self) -> bool:
        return self._runtime is not None

    # -- declaring tasks --------------------------------------------------------------------------

    @overload
    def task(self, func: Callable[P, R], /) -> Callable[P, R]: ...

    # The options and their defaults are TaskOptions' (options.py); here only their types.
    @overload
    def task(
        self,
        *,
        retries: int = ...,
        delay: float = ...,
        backoff: float = ...,
        max_delay: float = ...,
        jitter: bool = ...,
        retry_on: tuple[type[BaseException], ...] = ...,
        give_up_on: tuple[type[BaseException], ...] = ...,
        timeout: float | None = ...,
        persist: bool = ...,
        name: str | None = ...,
        executor: Literal["thread", "process"] = ...,
        on_failure: Hook | None = ...,
        priority: int = ...,
        max_concurrent: int | None = ...,
        max_concurrent_per_key: int | None = ...,
        rate_limit: str | None = ...,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    # `func` is not positional-only here (the overloads say it is): mypy then checks them against this.
    def task(self, func: Callable[..., Any] | None = None, **options: Any) -> Any:
        """Register a task. The function is returned unchanged, so it stays directly callable.

        Options left out take their defaults from TaskOptions.
        """
        task_options = TaskOptions.from_arguments(options)
        # Built now, so that bad options fail at decoration time even before a function is given.
        RetryPolicy.of(task_options)

        def register(function: Callable[P, R]) -> Callable[P, R]:
            spec = build_spec(function, task_options)
            if task_options.on_failure is not None:
                self.hooks.set_on_failure(spec.name, task_options.on_failure)
            self.registry.add(spec)
            return function

        return register(func) if func is not None else register

    def schedule(
        self,
        *,
        every: float | timedelta | None = None,
        cron: str | None = None,
        timezone: str = "UTC",
        name: str | None = None,
        catch_up: bool = True,
        **options: Any,
    ) -> Callable[[Callable[[], R]], Callable[[], R]]:
        """Register a task that runs periodically: `every` seconds (or a timedelta), or at the times
        of the `cron` text in `timezone`. Each due time runs once across every instance sharing the
        database (see schedules.py); `options` are @task's. After downtime only the latest missed
        due time runs, and with catch_up=False not even that one when it is over a minute old.
        """

        def register(function: Callable[[], R]) -> Callable[[], R]:
            if self._runtime is not None:
                raise RuntimeError("schedules must be declared before the task manager starts")
            schedule = build_schedule(function, name=name, every=every, cron=cron, timezone=timezone, catch_up=catch_up)
            if schedule.name in self.schedules:
                raise ValueError(f"schedule {schedule.name!r} is declared twice; pass a unique name=... to @schedule")
            self.task(name=schedule.name, **options)(function)
            self.schedules[schedule.name] = schedule
            return function

        return register

    async def pause_schedule(self, name: str, *, actor: str = "code") -> None:
        """Stop firing schedule `name` on every instance until resumed (audited as `actor`).
        Raises ScheduleNotFound for a name no instance registered."""
        await asyncio.to_thread(set_paused, self.store, name, paused=True, actor=actor)

    async def resume_schedule(self, name: str, *, actor: str = "code") -> None:
        """Fire schedule `name` again from its next due time (audited as `actor`)."""
        await asyncio.to_thread(set_paused, self.store, name, paused=False, actor=actor)

    def scheduled(self, row: dict[str, Any]) -> None:
        """A schedule's due time made this task row (any thread): count it, tell the dashboards."""
        self.enqueued_total += 1
        self.events.publish(TaskEvent(task_id=row["id"], name=row["name"], status=TaskStatus.PENDING.value))

    def enable_tracing(self, tracer_provider: Any = None) -> None:
        """OpenTelemetry spans for enqueues and attempts (needs opentelemetry-api; the global
        tracer provider unless one is given). Call before the manager starts."""
        if self._runtime is not None:
            raise RuntimeError("enable_tracing() must be called before the task manager starts")
        from .tracing import TaskTracer

        self.tracer = TaskTracer(tracer_provider)

    def disable_tracing(self) -> None:
        """No spans (the default). Call before the manager starts."""
        if self._runtime is not None:
            raise RuntimeError("disable_tracing() must be called before the task manager starts")
        self.tracer = None

    def on(self, event: str, hook: Hook) -> Hook:
        """Call `hook(outcome)` (sync or async) on each "succeeded", "failed", "gave_up" or
        "quarantined" event this instance records. Returns the hook unchanged."""
        return self.hooks.on(event, hook)

    # -- enqueueing -------------------------------------------------------------------------------

    def enqueue(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        options: EnqueueOptions | None = None,
        handoff: bool = True,
    ) -> str:
        """Record a task and return its id. With handoff=False the caller hands it over later
        (ManagedBackgroundTasks does, after the response).

        With no runtime (before start, or in a script that never serves HTTP) the task is only
        committed to the database, ownerless; the first manager that starts on it runs it.
        """
        runtime = self._runs_tasks()
        options = options or NO_OPTIONS
        spec = self.registry.for_function(func)
        if runtime is None and not spec.registered:
            raise TypeError(
                f"{spec.name!r} is not declared with @task_manager.task, and the task manager is not running: "
                "a task recorded for later is found again by its registered name, so declare the function "
                "with @task_manager.task, or start the manager first (`async with task_manager.lifespan():`)"
            )
        plain = spec.signature.dump(spec.name, args, kwargs or {}, max_bytes=self.config.max_argument_bytes)
        not_before = None if options.delay is None and options.eta is None else options.not_before()
        # A task with a concurrency limit waits ownerless like one enqueued where no manager runs:
        # only the claim of ownerless rows starts it, the one place its limits are checked.
        limited = check_limited_enqueue(spec.name, spec.options, options)
        row = self._new_row(
            None if limited else runtime,
            spec,
            argument_codec.encode(plain),
            idempotency_key=options.idempotency_key,
            next_run_at=not_before,
            priority=spec.options.priority if options.priority is None else options.priority,
            concurrency_key=options.concurrency_key,
        )
        writer = None if runtime is None or limited else runtime.writer
        task_id = self.store.enqueue(row, session=options.session, writer=writer)
        if task_id != row["id"]:
            return task_id  # the task that holds this idempotency key already
        if runtime is None:
            self._recorded_for_later(task_id, spec.name)
            return task_id
        if limited:
            self.enqueued_total += 1
            self.events.publish(TaskEvent(task_id=task_id, name=spec.name, status=TaskStatus.PENDING.value))
            runtime.leases.claim_soon()
            return task_id
        job = Job(
            task_id=task_id,
            spec=spec,
            arguments=plain,
            not_before=not_before,
            context=contextvars.copy_context(),
            enqueued_at=row["created_at"],
            trace_link=None if self.tracer is None else self.tracer.enqueued(task_id, spec.name),
            priority=row["priority"],
        )
        with self._unhanded_lock:
            self._unhanded[task_id] = job
            self._unhanded_since[task_id] = time.monotonic()
        if self.events.listening:
            self.events.publish(TaskEvent(task_id=task_id, name=spec.name, status=TaskStatus.PENDING.value))
        self.enqueued_total += 1
        if handoff:
            self.hand_off([task_id])
        return task_id

    def _runs_tasks(self) -> Runtime | None:
        """The runtime, if tasks run here. An enqueue-only manager (concurrency 0) records every
        task as if no manager ran: committed ownerless, for a worker process to take."""
        return None if self.config.enqueue_only else self._runtime

    def _recorded_for_later(self, task_id: str, name: str) -> None:
        self.enqueued_total += 1
        if not self._told_not_running and not self.config.enqueue_only:
            self._told_not_running = True
            logger.info(
                "taskflow: the task manager is not running; task %s (%s) is recorded in the database and runs "
                "when a manager starts on it",
                task_id,
                name,
            )

    def _new_row(self, runtime: Runtime | None, spec: TaskSpec, arguments: str, **values: Any) -> dict[str, Any]:
        """A new task row owned by us, with a lease.

        With no runtime it has no owner and no lease, and is persisted whatever the task says:
        recovery, which runs when any manager starts on this database, takes exactly such rows.
        """
        now = utcnow()
        return new_task_row(
            id=new_task_id(),
            name=spec.name,
            arguments=arguments,
            persist=spec.persist or runtime is None,
            max_attempts=spec.policy.retries + 1,
            owner=None if runtime is None else self.owner,
            lease_expires_at=None if runtime is None else runtime.leases.lease_until(now),
            created_at=now,
            **values,
        )

    def hand_off(self, task_ids: list[str]) -> None:
        """Give recorded jobs to the runner (thread-safe)."""
        runtime = self._runtime
        if runtime is None:
            return
        with self._unhanded_lock:
            jobs = [job for task_id in task_ids if (job := self._unhanded.pop(task_id, None)) is not None]
            for job in jobs:
                del self._unhanded_since[job.task_id]
        if jobs:
            call_in_loop(runtime.loop, runtime.runner.submit_all, jobs)

    def _require_runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError(
                "the task manager is not running: start it in the app's lifespan (TaskAdmin does this, "
                "or `async with task_manager.lifespan():`); in tests use `with TestClient(app) as client:`"
            )
        return self._runtime

    # -- dependencies and installation ------------------------------------------------------------

    async def get_tasks(self, background_tasks: BackgroundTasks) -> ManagedBackgroundTasks:
        """Dependency: `tasks: ManagedBackgroundTasks = Depends(task_manager.get_tasks)`.

        `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool, a
        thread hop on every request that the other injection patterns do not pay.
        """
        if isinstance(background_tasks, ManagedBackgroundTasks) and background_tasks.task_manager is self:
            return background_tasks
        managed = ManagedBackgroundTasks(self)
        # FastAPI runs the request's own BackgroundTasks after the response; ours rides on it.
        background_tasks.add_task(managed)
        return managed

    background_tasks = get_tasks  # the reference library's alias

    def install(self, app: FastAPI) -> None:
        """Make plain `BackgroundTasks` parameters of this app's routes managed (auto_install)."""
        from .install import install

        install(app, self)

    def attach_lifespan(self, app: FastAPI) -> None:
        """Start and stop with the app, around whatever lifespan it already has."""
        if getattr(app.state, "taskflow_lifespan", None) is self:
            return
        inner = app.router.lifespan_context
        manager = self

        @asynccontextmanager
        async def lifespan(app_: Any) -> AsyncIterator[Any]:
            async with manager.lifespan(), inner(app_) as state:
                yield state

        app.router.lifespan_context = lifespan
        app.state.taskflow_lifespan = self

    # -- lifecycle --------------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[TaskManager]:
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    async def start(self) -> None:
        """Start (nested starts are counted: only the last stop really stops)."""
        self._users += 1
        if self._runtime is None:
            self.shutting_down = asyncio.Event()
            try:
                self._runtime = await Runtime.create(self)
            except BaseException:
                self._users -= 1  # not started: a later start must start it, and stop has nothing to stop
                raise

    async def stop(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users or self._runtime is None:
            return
        runtime, self._runtime = self._runtime, None
        await runtime.close(self.config.shutdown_timeout)

    async def flush(self) -> None:
        """Wait until every write queued so far is in the database (tests, benchmarks)."""
        if self._runtime is not None:
            await self._runtime.writer.flushed()

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until nothing is queued or running here, then flush (tests, benchmarks)."""
        runtime = self._require_runtime()
        async with asyncio.timeout(timeout):
            # Three owners (runner, hand-off table, writer) would each need an event; a short poll
            # is simpler for a helper that only tests and benchmarks call.
            while runtime.runner.active or self._unhanded:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            await runtime.writer.flushed()

    # -- control ------------------------------------------------------------------------------------

    async def cancel(self, task_id: str) -> CancelOutcome:
        """Cancel a task of any instance. Without a runtime here (the operator's command line) the
        database says it: a pending row is cancelled at once, a running one's owner stops it."""
        runtime = self._runtime
        if runtime is not None:
            await runtime.writer.flushed()
        row = await self._row_once_written(task_id)
        if row is None:
            return CancelOutcome.NOT_FOUND
        if row.status == TaskStatus.PENDING.value:
            if runtime is not None:
                runtime.runner.cancel(task_id)
            with self._unhanded_lock:
                self._unhanded.pop(task_id, None)
                self._unhanded_since.pop(task_id, None)
            if await asyncio.to_thread(self.store.cancel_pending, task_id):
                self.events.publish(TaskEvent(task_id=task_id, name=row.name, status=TaskStatus.CANCELLED.value))
                return CancelOutcome.CANCELLED
            row = await asyncio.to_thread(self.store.get, task_id)
        if row is not None and row.status == TaskStatus.RUNNING.value:
            await asyncio.to_thread(self.store.request_cancel, task_id)
            if runtime is not None:
                runtime.runner.cancel(task_id)
            return CancelOutcome.CANCELLING
        return CancelOutcome.ALREADY_FINISHED

    async def result(self, task_id: str, *, timeout: float | None = None) -> Any:
        """Wait for a task (of any instance) to finish and return its result, as the task
        function's return type hint says (a pydantic model, a dataclass, a datetime...).

        Raises TaskFailed if it failed, was cancelled or was interrupted; TaskResultInvalid if
        the stored result does not match the hint; TaskResultTimeout (a TimeoutError) when
        `timeout` seconds (None: no limit) pass first; TaskNotFound for an unknown id. Woken by
        the task's events (across instances with Redis), else it re-reads the row at a doubling
        interval; see results.py.
        """
        from .results import wait_for_result  # results.py builds on this module

        return await wait_for_result(self, task_id, timeout=timeout)

    async def _row_once_written(self, task_id: str) -> Any | None:
        """The task's row once it is in the task table, where a cancel can reach it.

        A task another instance enqueued moments ago may not be written yet: that instance holds
        it (in its intake file if persisted) and writes it within its `write_behind`. Ours are
        flushed already. None if it is still nowhere after our `write_behind` and a grace.
        """
        deadline = time.monotonic() + self.config.write_behind + UNWRITTEN_GRACE
        while True:
            row = await asyncio.to_thread(self.store.get, task_id)
            if row is not None or time.monotonic() > deadline:
                return row
            await asyncio.sleep(UNWRITTEN_POLL)

    async def retry(self, task_id: str) -> str:
        """Enqueue a failed (or cancelled/interrupted) task again as a new task linked to it.

        Without a runtime here (the operator's command line) or in an enqueue-only manager, the
        new task is recorded ownerless, and a running instance claims it at its next tick."""
        if self._runtime is not None:
            await self._runtime.writer.flushed()
        runtime = self._runs_tasks()
        row = await asyncio.to_thread(self.store.get, task_id)
        if row is None:
            raise TaskNotFound(task_id)
        if row.status not in (TaskStatus.FAILED.value, TaskStatus.CANCELLED.value, TaskStatus.INTERRUPTED.value):
            raise TaskNotRetryable(
                f"task {task_id} is {row.status}; only failed, cancelled or interrupted tasks can be retried"
            )
        spec = self.registry.get(row.name)
        if spec is None:
            raise TaskNotRetryable(f"no task named {row.name!r} is registered in this service")
        plain = argument_codec.decode(row.arguments)
        new_row = self._new_row(runtime, spec, row.arguments, retry_of=task_id, priority=row.priority)
        new_id = await asyncio.to_thread(self.store.enqueue, new_row)
        self.enqueued_total += 1
        job = Job(
            task_id=new_id,
            spec=spec,
            arguments=plain,
            context=contextvars.copy_context(),
            enqueued_at=new_row["created_at"],
            trace_link=None if self.tracer is None else self.tracer.enqueued(new_id, spec.name),
            priority=new_row["priority"],
        )
        if runtime is not None:
            runtime.runner.submit(job)
        self.events.publish(TaskEvent(task_id=new_id, name=spec.name, status=TaskStatus.PENDING.value))
        return new_id

    # -- used by the runtime ----------------------------------------------------------------------

    def jobs_from_claimed(self, rows: list[Any]) -> list[Job]:
        """Jobs for rows a batch claimed into RUNNING for us (Store.claim_ownerless)."""
        # Every row names a registered task: the claim takes only those.
        return [job for row in rows if (job := self._job_for(row, claimed=row.attempt)) is not None]

    def jobs_from_recovered(self, rows: list[Any]) -> list[Job]:
        jobs = []
        for row in rows:
            if row.status != TaskStatus.PENDING.value:
                logger.error("taskflow: task %s (%s) quarantined: %s", row.id, row.name, row.error_message)
                self.events.publish(TaskEvent(task_id=row.id, name=row.name, status=row.status))
                self.metrics.ended(row.name, "quarantined")
                self._quarantined(row)
                continue
            self.metrics.recovered(row.name)
            if (job := self._job_for(row, not_before=row.next_run_at)) is not None:
                jobs.append(job)
        return jobs

    def _job_for(self, row: Any, **start: Any) -> Job | None:
        """The job that runs a stored row (None, logged, when this service does not register its task)."""
        spec = self.registry.get(row.name)
        if spec is None:
            logger.error("taskflow: task %s names %r, which this service does not register", row.id, row.name)
            return None
        return Job(
            task_id=row.id,
            spec=spec,
            arguments=argument_codec.decode(row.arguments),
            retries_used=row.retries_used,
            enqueued_at=row.created_at,
            priority=row.priority,
            **start,
        )

    def _quarantined(self, row: Any) -> None:
        if self.hooks.wants("quarantined", row.name):
            outcome = TaskOutcome(
                event="quarantined",
                task_id=row.id,
                task_name=row.name,
                attempt=row.attempt,
                error_type=row.error_type,
                error_message=row.error_message,
            )
            self.hooks.emit(outcome)  # a recovered task's context is empty: it outlived its request

    def awaits_handoff(self, task_id: str) -> bool:
        """True while a recorded task waits for its request to hand it over."""
        return task_id in self._unhanded

    def overdue_handoffs(self) -> list[str]:
        limit = time.monotonic() - self.config.handoff_grace
        with self._unhanded_lock:
            return [task_id for task_id, added in self._unhanded_since.items() if added < limit]
