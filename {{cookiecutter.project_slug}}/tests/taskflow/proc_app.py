"""A test-only service for the process tests: `uvicorn --factory tests.taskflow.proc_app:create_app`.

Configured from the environment (DATABASE_URL, TASK_*, PROC_RECORD_DIR and, for a periodic
task "tick", PROC_SCHEDULE_EVERY). Its tasks append
one JSON line when an execution starts and one when it ends to `<PROC_RECORD_DIR>/<pid>.jsonl`,
so a test can count executions across processes, including those a `kill -9` cut short.
Appends of one short line to an O_APPEND file are atomic, and they survive the process's death.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import BackgroundTasks, FastAPI, Query

from app.taskflow import TaskAdmin, TaskManager, current_task

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return default if value in (None, "") else float(value)


class ExecutionLog:
    """Side effects of the tasks: one line per start and per end of an execution."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(folder / f"{os.getpid()}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def record(self, event: str, **fields: Any) -> None:
        context = current_task()
        line = {"event": event, "task_id": context.task_id, "attempt": context.attempt, "pid": os.getpid()}
        line |= {"at": time.time(), **fields}
        os.write(self._fd, (json.dumps(line) + "\n").encode())


def build_manager(executions: ExecutionLog) -> TaskManager:
    manager = TaskManager(
        database_url=os.environ["DATABASE_URL"],
        lease_seconds=_env_float("TASK_LEASE_SECONDS", 2.0),
        max_recoveries=int(_env_float("TASK_MAX_RECOVERIES", 5)),
        shutdown_timeout=_env_float("TASK_SHUTDOWN_TIMEOUT", 2.0),
        concurrency=int(_env_float("TASK_CONCURRENCY", 8)),
        poll_interval=_env_float("TASK_POLL_INTERVAL", 0.1),
    )

    @manager.task(persist=True, name="work")
    async def work(seconds: float) -> str:
        executions.record("start")
        await asyncio.sleep(seconds)
        executions.record("end")
        return "done"

    @manager.task(persist=True, name="crash")
    async def crash() -> None:
        executions.record("start")
        # The worst a task can do: take its process down with it, every time it runs.
        os._exit(1)

    every = os.environ.get("PROC_SCHEDULE_EVERY")
    if every:  # only the schedule tests declare one: the other tests run no scheduler

        @manager.schedule(every=float(every), name="tick")
        async def tick() -> None:
            executions.record("start")
            executions.record("end")

    return manager


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(handler)
    logging.getLogger("taskflow").setLevel(logging.INFO)


def create_app() -> FastAPI:
    configure_logging()
    executions = ExecutionLog(Path(os.environ["PROC_RECORD_DIR"]))
    manager = build_manager(executions)
    tasks = {spec.name: spec.func for spec in manager.registry.all()}
    app = FastAPI()
    TaskAdmin(app, manager, auto_install=True, username="admin", password="admin-password")

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "pid": os.getpid(), "owner": manager.owner}

    @app.post("/work")
    def enqueue_work(
        count: Annotated[int, Query(ge=1, le=10_000)], seconds: Annotated[float, Query(ge=0)]
    ) -> dict[str, list[str]]:
        """Enqueue `count` persisted tasks at once; each row is committed before this returns."""
        return {"ids": [manager.enqueue(tasks["work"], kwargs={"seconds": seconds}) for _ in range(count)]}

    @app.post("/crash")
    def enqueue_crash(background_tasks: BackgroundTasks) -> dict[str, str]:
        """The task starts after the response is sent, so the caller gets its id before the crash."""
        return {"task_id": background_tasks.add_task(tasks["crash"])}

    return app
