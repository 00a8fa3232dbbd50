"""Everything that exists only while a TaskManager runs: writer, runner, leases, retention, Redis, signals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from typing import TYPE_CHECKING, Any

from ._loops import finished_in_thread
from .context import install_log_capture
from .events import RedisBridge
from .leases import CLAIM_DEPTH, LeaseKeeper
from .process_executor import ProcessPool
from .retention import Retention
from .runner import Runner
from .schedules import Scheduler
from .store import TaskLimits
from .writer import Writer

if TYPE_CHECKING:
    from .manager import TaskManager

logger = logging.getLogger("taskflow")

# Seconds shutdown waits for the last writes and the lease release once tasks have stopped.
FINAL_WRITES_TIMEOUT = 10.0


class Runtime:
    """Everything that exists only while the manager runs (one event loop)."""

    def __init__(self, manager: TaskManager, loop: asyncio.AbstractEventLoop) -> None:
        config = manager.config
        self.manager = manager
        self.loop = loop
        self.writer = Writer(manager.store, owner=manager.owner, hold_seconds=config.write_behind)
        self.processes = ProcessPool(config.processes)
        self.runner = Runner(
            writer=self.writer,
            events=manager.events,
            owner=manager.owner,
            concurrency=config.concurrency,
            threads=config.threads,
            processes=self.processes,
            hooks=manager.hooks,
            metrics=manager.metrics,
            tracer=manager.tracer,
        )
        self.leases = LeaseKeeper(
            store=manager.store,
            owner=manager.owner,
            lease_seconds=config.lease_seconds,
            max_recoveries=config.max_recoveries,
            poll_interval=config.poll_interval,
            on_recovered=self._submit_recovered,
            on_claimed=self._submit_claimed,
            on_tick=self._tick,
            holds=self._holds,
            runnable=self._runnable_names,
            room=self._room,
            wait_for_room=self._wait_for_room,
            limits=self._task_limits,
            rates=manager.rate_windows,
            wait_for_finish=self._wait_for_finish,
            settle=self.writer.flushed,
            before_claim_with_limits=self._before_claim_with_limits,
        )
        self._ended_before_claim = 0
        self.retention = Retention(manager.store, config.keep_finished)
        # Only a service that declares schedules runs the loop that fires them.
        self.scheduler = Scheduler(manager) if manager.schedules else None
        self.redis: RedisBridge | None = None
        self._previous_signals: dict[int, Any] = {}

    @classmethod
    async def create(cls, manager: TaskManager) -> Runtime:
        loop = asyncio.get_running_loop()
        store = await asyncio.to_thread(lambda: manager.store)  # open and create tables off the loop
        if manager.config.enqueue_only and not store.shared:
            raise ValueError(
                "TaskManager: concurrency=0 (enqueue only) needs a database that worker processes share, "
                "but the store is in memory: set database_url (TASK_CONCURRENCY=0 needs DATABASE_URL) "
                "to a SQLite file or PostgreSQL, or give concurrency >= 1 to run the tasks here"
            )
        await asyncio.to_thread(store.open, manager.owner, stale_after=manager.config.lease_seconds)
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
        await runtime.retention.start()
        if runtime.scheduler is not None:
            await runtime.scheduler.start()
        runtime._watch_signals()
        role = " (enqueue only: worker processes run the tasks)" if manager.config.enqueue_only else ""
        logger.info("taskflow: started as %s on %s%s", manager.owner, manager.store.dialect, role)
        return runtime

    async def close(self, shutdown_timeout: float) -> None:
        manager = self.manager
        manager.shutting_down.set()
        self._restore_signals()
        if self.scheduler is not None:
            await self.scheduler.stop()
        finished = await self.runner.drain(shutdown_timeout)
        if not finished:
            logger.warning(
                "taskflow: %d task(s) still running after %.1fs; cancelling them (persisted ones will be re-run)",
                len(self.runner.running_ids()),
                shutdown_timeout,
            )
        await self.runner.stop()
        await self.processes.close()
        await manager.hooks.drain(shutdown_timeout)
        await self.retention.stop()
        await self.leases.stop()
        # With the database down the last writes could wait forever; shutdown must not. What
        # is not written is safe: persisted tasks are recovered when their leases expire.
        try:
            async with asyncio.timeout(FINAL_WRITES_TIMEOUT):
                await self.writer.close()
                released, interrupted = await asyncio.to_thread(self.leases.release)
            if released or interrupted:
                logger.info("taskflow: released %d persisted task(s), interrupted %d", released, interrupted)
            left = await asyncio.to_thread(manager.store.close)
            if left:
                logger.warning(
                    "taskflow: %d persisted task(s) were not written to the task table; they stay in the intake "
                    "file, and the next start (of any instance) recovers them",
                    left,
                )
        except TimeoutError:
            logger.error(
                "taskflow: the database did not take the last task updates within %.0fs; stopping anyway "
                "(persisted tasks will be recovered after their leases expire)",
                FINAL_WRITES_TIMEOUT,
            )
            self.writer.abandon()
            # What the writer held stays in the intake file; any instance's recovery moves it.
            await asyncio.to_thread(manager.store.close)
        except Exception:
            logger.exception("taskflow: could not release leases at shutdown; they expire on their own")
        if self.redis is not None:
            await self.redis.stop()
        manager.events.unbind()

    def _holds(self, task_id: str) -> bool:
        """Whether this instance has a job for the task (queued, waiting, running, or not yet handed over)."""
        return self.runner.owns(task_id) or self.manager.awaits_handoff(task_id)

    def _runnable_names(self) -> list[str]:
        if self.manager.config.enqueue_only:
            return []  # takes no task: worker processes do
        return [spec.name for spec in self.manager.registry.all() if spec.registered]

    def _task_limits(self) -> dict[str, TaskLimits]:
        """The registered tasks that declared a concurrency or rate limit, for the claim of ownerless rows."""
        return {
            spec.name: TaskLimits(spec.options.max_concurrent, spec.options.max_concurrent_per_key, spec.options.rate)
            for spec in self.manager.registry.all()
            if spec.registered and spec.options.limited
        }

    def _before_claim_with_limits(self) -> None:
        self._ended_before_claim = self.runner.ended

    async def _wait_for_finish(self) -> None:
        # Until a task ends here after the last claim with limits began (at once if one already
        # has, even during that claim): the claim counted its slot as taken, and it may be free
        # now. None running here: never (the poll bounds the wait).
        await self.runner.wait_for_end(self._ended_before_claim)

    def _room(self) -> int:
        """How many more ownerless tasks to claim now (leases.CLAIM_DEPTH). Tasks waiting here for
        their delay do not count: however many there are, due ones are still taken."""
        return self.runner.room(CLAIM_DEPTH)

    async def _wait_for_room(self) -> None:
        # Until half of what it may hold has run: the next batch arrives before the runner runs dry.
        depth = self.runner.due + self.runner.room(CLAIM_DEPTH)
        await self.runner.wait_for_room(depth // 2 + 1)

    def _submit_recovered(self, rows: list[Any]) -> None:
        for job in self.manager.jobs_from_recovered(rows):
            self.runner.submit(job)

    def _submit_claimed(self, rows: list[Any]) -> None:
        for job in self.manager.jobs_from_claimed(rows):
            self.runner.submit(job)

    async def _tick(self) -> None:
        overdue = self.manager.overdue_handoffs()
        if overdue:
            self.manager.hand_off(overdue)
        # Called inside the lease keeper's loop: a stop waits for the call under way.
        for task_id in await finished_in_thread(self.leases.cancel_requests):
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
