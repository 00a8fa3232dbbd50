"""TaskManager: the registry, the store and the runner wired together; small on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, overload

from fastapi import BackgroundTasks, FastAPI

from . import arguments as argument_codec
from ._loops import call_in_loop
from .background import EnqueueOptions, ManagedBackgroundTasks, new_task_id
from .context import install_log_capture
from .events import EventBus, RedisBridge, TaskEvent
from .leases import LeaseKeeper, new_owner_id
from .models import TaskStatus, utcnow
from .policy import RetryPolicy
from .registry import Registry, build_spec
from .runner import Job, Runner
from .store import DuplicateTask, Store, open_store
from .writer import Writer

logger = logging.getLogger("taskflow")

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, kw_only=True)
class TaskflowConfig:
    """Manager-wide settings (each task's own options are on its @task)."""

    # None: an in-memory store (nothing survives the process). Else sqlite:///... or postgresql+psycopg://...
    database_url: str | None = None
    # Tasks running at once in this process, and threads for sync tasks among them.
    concurrency: int = 32
    threads: int = 16
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
    # Carry live events between instances (optional).
    redis_url: str | None = None
    redis_channel: str = "taskflow:events"

    def __post_init__(self) -> None:
        problems = []
        for name in ("concurrency", "threads", "max_recoveries"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.lease_seconds < 1:
            problems.append(f"lease_seconds must be >= 1, got {self.lease_seconds!r}")
        for name in ("shutdown_timeout", "handoff_grace", "write_behind"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0 seconds, got {getattr(self, name)!r}")
        if self.poll_interval <= 0:
            problems.append(f"poll_interval must be > 0 seconds, got {self.poll_interval!r}")
        if problems:
            raise ValueError("TaskManager: " + "; ".join(problems))


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
        self.events = EventBus()
        self.owner = new_owner_id()
        self._store: Store | None = None
        self._runtime: _Runtime | None = None
        self._users = 0
        self._unhanded: dict[str, tuple[Job, float]] = {}
        self._unhanded_lock = threading.Lock()
        self.shutting_down = asyncio.Event()

    def configure(self, **options: Any) -> None:
        """Change settings before start (e.g. from the app's settings in create_app)."""
        if self._runtime is not None:
            raise RuntimeError("configure() must be called before the task manager starts")
        fields = {**self.config.__dict__, **options}
        self.config = TaskflowConfig(**fields)
        if self._store is not None:
            self._store.dispose()
            self._store = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.config.database_url)
            self._store.create_tables()
        return self._store

    @property
    def running(self) -> bool:
        return self._runtime is not None

    # -- declaring tasks --------------------------------------------------------------------------

    @overload
    def task(self, func: Callable[P, R], /) -> Callable[P, R]: ...

    @overload
    def task(
        self,
        *,
        retries: int = 0,
        delay: float = 0.0,
        backoff: float = 1.0,
        max_delay: float = 3600.0,
        jitter: bool = False,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        give_up_on: tuple[type[BaseException], ...] = (),
        timeout: float | None = None,
        persist: bool = False,
        name: str | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    def task(
        self,
        func: Callable[..., Any] | None = None,
        /,
        *,
        retries: int = 0,
        delay: float = 0.0,
        backoff: float = 1.0,
        max_delay: float = 3600.0,
        jitter: bool = False,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        give_up_on: tuple[type[BaseException], ...] = (),
        timeout: float | None = None,
        persist: bool = False,
        name: str | None = None,
    ) -> Any:
        """Register a task. The function is returned unchanged, so it stays directly callable."""
        policy = RetryPolicy(
            retries=retries,
            delay=delay,
            backoff=backoff,
            max_delay=max_delay,
            jitter=jitter,
            retry_on=tuple(retry_on),
            give_up_on=tuple(give_up_on),
        )

        def register(function: Callable[P, R]) -> Callable[P, R]:
            spec = build_spec(function, name=name, policy=policy, timeout=timeout, persist=persist)
            self.registry.add(spec)
            return function

        return register(func) if func is not None else register

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
        (ManagedBackgroundTasks does, after the response)."""
        runtime = self._require_runtime()
        options = options or EnqueueOptions()
        spec = self.registry.for_function(func)
        plain = spec.signature.dump(spec.name, args, kwargs or {})
        not_before = options.not_before()
        key = options.idempotency_key
        if key is not None:
            existing = self.store.find_by_idempotency_key(key)
            if existing is not None:
                return existing
        if options.session is not None and self.store.dialect == "sqlite" and self.config.database_url is None:
            raise ValueError("transactional enqueue (session=...) needs a database store, not the in-memory one")
        task_id = new_task_id()
        now = utcnow()
        row = {
            **_EMPTY_ROW,
            "id": task_id,
            "name": spec.name,
            "status": TaskStatus.PENDING.value,
            "arguments": argument_codec.encode(plain),
            "persist": spec.persist,
            "idempotency_key": key,
            "attempt": 0,
            "max_attempts": spec.policy.retries + 1,
            "recoveries": 0,
            "owner": self.owner,
            "lease_expires_at": runtime.leases.lease_until(),
            "cancel_requested": False,
            "created_at": now,
            "updated_at": now,
            "next_run_at": not_before,
        }
        if spec.persist or key is not None or options.session is not None:
            try:
                self.store.insert_task(row, session=options.session)
            except DuplicateTask as duplicate:
                return duplicate.task_id
        else:
            runtime.writer.insert(row)
        job = Job(task_id=task_id, spec=spec, arguments=plain, not_before=not_before)
        with self._unhanded_lock:
            self._unhanded[task_id] = (job, time.monotonic())
        if self.events.listening:
            self.events.publish(TaskEvent(task_id=task_id, name=spec.name, status=TaskStatus.PENDING.value))
        if handoff:
            self.hand_off([task_id])
        return task_id

    def hand_off(self, task_ids: list[str]) -> None:
        """Give recorded jobs to the runner (thread-safe)."""
        runtime = self._runtime
        if runtime is None:
            return
        with self._unhanded_lock:
            jobs = [entry[0] for task_id in task_ids if (entry := self._unhanded.pop(task_id, None)) is not None]
        if not jobs:
            return
        for job in jobs:
            call_in_loop(runtime.loop, runtime.runner.submit, job)

    def _require_runtime(self) -> _Runtime:
        if self._runtime is None:
            raise RuntimeError(
                "the task manager is not running: start it in the app's lifespan (TaskAdmin does this, "
                "or `async with task_manager.lifespan():`); in tests use `with TestClient(app) as client:`"
            )
        return self._runtime

    # -- dependencies and installation ------------------------------------------------------------

    def get_tasks(self, background_tasks: BackgroundTasks) -> ManagedBackgroundTasks:
        """Dependency: `tasks: ManagedBackgroundTasks = Depends(task_manager.get_tasks)`."""
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
            self._runtime = await _Runtime.create(self)

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
        runtime = self._require_runtime()
        await runtime.writer.flushed()
        row = await asyncio.to_thread(self.store.get, task_id)
        if row is None:
            return CancelOutcome.NOT_FOUND
        if row.status == TaskStatus.PENDING.value:
            runtime.runner.cancel(task_id)
            with self._unhanded_lock:
                self._unhanded.pop(task_id, None)
            if await asyncio.to_thread(self.store.cancel_pending, task_id):
                self.events.publish(TaskEvent(task_id=task_id, name=row.name, status=TaskStatus.CANCELLED.value))
                return CancelOutcome.CANCELLED
            row = await asyncio.to_thread(self.store.get, task_id)
        if row is not None and row.status == TaskStatus.RUNNING.value:
            await asyncio.to_thread(self.store.request_cancel, task_id)
            runtime.runner.cancel(task_id)
            return CancelOutcome.CANCELLING
        return CancelOutcome.ALREADY_FINISHED

    async def retry(self, task_id: str) -> str:
        """Enqueue a failed (or cancelled/interrupted) task again as a new task linked to it."""
        runtime = self._require_runtime()
        await runtime.writer.flushed()
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
        new_id = new_task_id()
        now = utcnow()
        new_row = {
            **_EMPTY_ROW,
            "id": new_id,
            "name": spec.name,
            "status": TaskStatus.PENDING.value,
            "arguments": row.arguments,
            "persist": spec.persist,
            "max_attempts": spec.policy.retries + 1,
            "owner": self.owner,
            "lease_expires_at": runtime.leases.lease_until(),
            "created_at": now,
            "updated_at": now,
            "retry_of": task_id,
        }
        await asyncio.to_thread(self.store.insert_task, new_row)
        runtime.runner.submit(Job(task_id=new_id, spec=spec, arguments=plain))
        self.events.publish(TaskEvent(task_id=new_id, name=spec.name, status=TaskStatus.PENDING.value))
        return new_id

    # -- used by the runtime ----------------------------------------------------------------------

    def _jobs_from_recovered(self, rows: list[Any]) -> list[Job]:
        jobs = []
        for row in rows:
            if row.status != TaskStatus.PENDING.value:
                logger.error("taskflow: task %s (%s) quarantined: %s", row.id, row.name, row.error_message)
                self.events.publish(TaskEvent(task_id=row.id, name=row.name, status=row.status))
                continue
            spec = self.registry.get(row.name)
            if spec is None:
                logger.error("taskflow: task %s names %r, which this service does not register", row.id, row.name)
                continue
            jobs.append(
                Job(
                    task_id=row.id,
                    spec=spec,
                    arguments=argument_codec.decode(row.arguments),
                    not_before=row.next_run_at,
                    retries_used=row.retries_used,
                )
            )
        return jobs

    def _overdue_handoffs(self) -> list[str]:
        limit = time.monotonic() - self.config.handoff_grace
        with self._unhanded_lock:
            return [task_id for task_id, (_, added) in self._unhanded.items() if added < limit]


_EMPTY_ROW: dict[str, Any] = {
    "idempotency_key": None,
    "attempt": 0,
    "retries_used": 0,
    "recoveries": 0,
    "cancel_requested": False,
    "started_at": None,
    "finished_at": None,
    "next_run_at": None,
    "error_type": None,
    "error_message": None,
    "traceback": None,
    "result": None,
    "progress_done": None,
    "progress_total": None,
    "progress_message": None,
    "retry_of": None,
}


class _Runtime:
    """Everything that exists only while the manager runs (one event loop)."""

    def __init__(self, manager: TaskManager, loop: asyncio.AbstractEventLoop) -> None:
        config = manager.config
        self.manager = manager
        self.loop = loop
        self.writer = Writer(manager.store, owner=manager.owner, hold_seconds=config.write_behind)
        self.runner = Runner(
            writer=self.writer,
            events=manager.events,
            owner=manager.owner,
            concurrency=config.concurrency,
            threads=config.threads,
        )
        self.leases = LeaseKeeper(
            store=manager.store,
            owner=manager.owner,
            lease_seconds=config.lease_seconds,
            max_recoveries=config.max_recoveries,
            poll_interval=config.poll_interval,
            on_recovered=self._submit_recovered,
            on_tick=self._tick,
            holds=self._holds,
            runnable=self._runnable_names,
        )
        self.redis: RedisBridge | None = None
        self._previous_signals: dict[int, Any] = {}

    @classmethod
    async def create(cls, manager: TaskManager) -> _Runtime:
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(lambda: manager.store)  # open and create tables off the loop
        runtime = cls(manager, loop)
        if manager.config.redis_url:
            redis = RedisBridge(
                manager.config.redis_url, channel=manager.config.redis_channel, origin=manager.owner, bus=manager.events
            )
            try:
                await redis.start()
                runtime.redis = redis
            except Exception as exc:
                # Live events between instances are a convenience: tasks run without them.
                logger.error("taskflow: cannot reach Redis at %s (%s); live events stay local", redis.url, exc)
        manager.events.bind(loop, runtime.redis)
        install_log_capture()
        await runtime.writer.start()
        await runtime.runner.start()
        await runtime.leases.start()
        runtime._watch_signals()
        logger.info("taskflow: started as %s on %s", manager.owner, manager.store.dialect)
        return runtime

    async def close(self, shutdown_timeout: float) -> None:
        manager = self.manager
        manager.shutting_down.set()
        self._restore_signals()
        finished = await self.runner.drain(shutdown_timeout)
        if not finished:
            logger.warning(
                "taskflow: %d task(s) still running after %.1fs; cancelling them (persisted ones will be re-run)",
                len(self.runner.running_ids()),
                shutdown_timeout,
            )
        await self.runner.stop()
        await self.leases.stop()
        await self.writer.close()
        try:
            released, interrupted = await asyncio.to_thread(self.leases.release)
            if released or interrupted:
                logger.info("taskflow: released %d persisted task(s), interrupted %d", released, interrupted)
        except Exception:
            logger.exception("taskflow: could not release leases at shutdown; they expire on their own")
        if self.redis is not None:
            await self.redis.stop()
        manager.events.unbind()

    def _holds(self, task_id: str) -> bool:
        """Whether this instance has a job for the task (queued, waiting, running, or not yet handed over)."""
        return self.runner.owns(task_id) or task_id in self.manager._unhanded

    def _runnable_names(self) -> list[str]:
        return [spec.name for spec in self.manager.registry.all() if spec.registered]

    def _submit_recovered(self, rows: list[Any]) -> None:
        for job in self.manager._jobs_from_recovered(rows):
            self.runner.submit(job)

    async def _tick(self) -> None:
        overdue = self.manager._overdue_handoffs()
        if overdue:
            self.manager.hand_off(overdue)
        for task_id in await asyncio.to_thread(self.leases.cancel_requests):
            self.runner.cancel(task_id)

    # Uvicorn waits for open connections (the dashboard's event stream never ends by itself)
    # before it runs the lifespan shutdown, so we must hear SIGTERM/SIGINT ourselves: we set
    # `shutting_down` (streams close) and pass the signal on to the server's own handler.
    def _watch_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(signum)
            if not callable(previous):
                continue
            self._previous_signals[signum] = previous

            def handler(sig: int, frame: Any, _previous: Any = previous) -> None:
                self.loop.call_soon_threadsafe(self.manager.shutting_down.set)
                _previous(sig, frame)

            with contextlib.suppress(ValueError):
                signal.signal(signum, handler)

    def _restore_signals(self) -> None:
        for signum, previous in self._previous_signals.items():
            with contextlib.suppress(ValueError):
                signal.signal(signum, previous)
        self._previous_signals.clear()
