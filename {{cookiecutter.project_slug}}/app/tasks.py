"""Example tasks: the task manager every route uses, and three tasks that show its features."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from typing import Any

from app.config import Settings, get_settings
from app.taskflow import TaskManager, TaskOutcome, current_task

logger = logging.getLogger("app.tasks")

# Configured from the settings by configure_task_manager(); tasks register on it at import time.
task_manager = TaskManager()

# Tasks that ended failed here, by task name: a stand-in for your alerting or a metric.
gave_up: Counter[str] = Counter()


def note_give_up(outcome: TaskOutcome) -> None:
    """Hook: a task used up its retries (or was quarantined); log it and count it."""
    gave_up[outcome.task_name] += 1
    logger.warning(
        "task %s (%s) %s after attempt %d: %s",
        outcome.task_id,
        outcome.task_name,
        "was quarantined" if outcome.event == "quarantined" else "gave up",
        outcome.attempt,
        outcome.error_message,
    )


task_manager.on("gave_up", note_give_up)
task_manager.on("quarantined", note_give_up)


def configure_task_manager(settings: Settings | None = None) -> TaskManager:
    """The task manager, configured from the service's settings: create_app() and the operator's
    command line (`python -m app.taskflow`) both call this."""
    settings = settings or get_settings()
    keep_days = settings.task_keep_finished_days
    # Unset settings leave taskflow's own default (written once, in taskflow's config.py).
    defaults_overridden: dict[str, Any] = {}
    if settings.task_processes is not None:
        defaults_overridden["processes"] = settings.task_processes
    task_manager.configure(
        database_url=settings.database_url,
        migrate_on_start=settings.migrate_on_start,
        redis_url=settings.redis_url,
        concurrency=settings.task_concurrency,
        threads=settings.task_thread_pool,
        shutdown_timeout=settings.task_shutdown_timeout,
        lease_seconds=settings.task_lease_seconds,
        max_recoveries=settings.task_max_recoveries,
        keep_finished=None if keep_days is None else keep_days * 86400,
        **defaults_overridden,
    )
    return task_manager


class EmailServiceUnavailable(Exception):
    """The mail relay answered 503; worth retrying."""


@task_manager.task(retries=3, delay=1.0, backoff=2.0, jitter=True, retry_on=(EmailServiceUnavailable,))
async def send_email(address: str) -> dict[str, str]:
    """Send a welcome email (here: log it). Retried with exponential backoff when the relay is down."""
    logger.info("sending welcome email to %s", address)
    await asyncio.sleep(0.05)
    return {"sent_to": address}


@task_manager.task(persist=True, retries=1, delay=2.0, timeout=3600)
async def build_report(seconds: int) -> dict[str, int]:
    """A long task: persisted (it survives restarts and crashes) and reporting progress each second."""
    context = current_task()
    for done in range(seconds):
        context.progress(done, seconds, f"step {done + 1} of {seconds}")
        await asyncio.sleep(1.0)
    context.progress(seconds, seconds, "done")
    logger.info("report built in %d steps", seconds)
    return {"steps": seconds}


@task_manager.task(retries=3, delay=0.2, backoff=2.0)
def flaky(failure_rate: float = 0.5) -> str:
    """A sync task that fails part of the time, to show retries on the dashboard."""
    if random.random() < failure_rate:
        raise ConnectionError("the upstream service dropped the connection")
    return "ok"
