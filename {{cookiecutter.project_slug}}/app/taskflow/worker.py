"""Worker processes: run a service's tasks with no HTTP server.

A worker is a task manager started on its own, on the same database as the web processes. It
takes the tasks nobody owns (those an enqueue-only web process, concurrency 0, committed, and
those an instance released at its shutdown) in batches, as many as it has room for, and runs
them. Several workers share one backlog: on PostgreSQL from any host, on a SQLite file from the
one host. A worker killed outright leaves leases that expire; the others take its tasks over.
SIGTERM or SIGINT stops it as the web process stops: no new task starts, running ones get
`shutdown_timeout` to finish, and what is left is released for another instance to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from .manager import TaskManager

logger = logging.getLogger("taskflow.worker")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def run_worker(manager: TaskManager, *, stop: asyncio.Event | None = None) -> None:
    """Run `manager`'s tasks until SIGTERM or SIGINT (or until `stop` is set), then stop it.

    The manager must have its tasks registered and be configured already (a database that other
    processes share, concurrency >= 1).
    """
    if manager.config.enqueue_only:
        raise ValueError(
            "a worker with concurrency 0 would run no task: concurrency 0 is for enqueue-only web processes; "
            "give the worker concurrency >= 1 (TASK_CONCURRENCY)"
        )
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    installed = []
    for signum in STOP_SIGNALS:
        # Not on the main thread (or not on a Unix loop): the caller stops it through `stop`.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    try:
        async with manager.lifespan():
            logger.info(
                "taskflow: worker %s running tasks (up to %d at once) on %s; SIGTERM drains it and stops",
                manager.owner,
                manager.config.concurrency,
                manager.store.dialect,
            )
            await stop.wait()
            logger.info(
                "taskflow: worker %s stopping: running tasks get %.0fs to finish, the rest are released",
                manager.owner,
                manager.config.shutdown_timeout,
            )
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
    logger.info("taskflow: worker %s stopped", manager.owner)
