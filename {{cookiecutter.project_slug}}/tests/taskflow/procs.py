"""Real processes for the process tests: start uvicorn or a worker, wait on conditions, kill, read results.

Every wait polls a condition against a generous deadline (never a fixed sleep), and every
process a test starts is killed in the fixture's `finally`, whatever the test did.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from app.taskflow.store import queries

SERVICE_ROOT = Path(__file__).resolve().parents[2]
APP_FACTORY = "tests.taskflow.proc_app:create_app"
WORKER_MODULE = "tests.taskflow.proc_worker"
WORKER_STARTED = "running tasks"  # in a worker's start line (app/taskflow/worker.py)


def wait_until(condition: Callable[[], Any], *, timeout: float, interval: float = 0.05, what: str = "") -> Any:
    """Poll until `condition()` is truthy and return its value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what or getattr(condition, '__name__', condition)}")
        time.sleep(interval)


def end_process(process: subprocess.Popen[bytes], *, grace: float = 30.0) -> None:
    """Cleanup of a server a test started: SIGTERM, and SIGKILL if it is still there after `grace` s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """One uvicorn process of the test service, on its own port, logging to its own file."""

    name: str
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    # Extra uvicorn options, e.g. ("--workers", "2").
    options: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        server = [sys.executable, "-m", "uvicorn", "--factory", APP_FACTORY]
        return [*server, "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning", *self.options]

    def start(self) -> None:
        assert not self.alive, f"{self.name} is already running"
        command = self.command()
        env = {**os.environ, "PYTHONPATH": str(SERVICE_ROOT), "PYTHONUNBUFFERED": "1", **self.env}
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1} of {self.name}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                command, cwd=SERVICE_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, timeout: float = 30.0) -> bool:
        """True once /healthz answers; False if the process exited first (a crashing task)."""
        outcome = wait_until(
            lambda: "up" if self.healthy() else ("exited" if not self.alive else None),
            timeout=timeout,
            what=f"{self.name} answering /healthz\n{self.log_tail()}",
        )
        return outcome == "up"

    def start_healthy(self, timeout: float = 30.0) -> None:
        self.start()
        assert self.wait_healthy(timeout), f"{self.name} exited while starting\n{self.log_tail()}"

    def kill(self) -> float:
        """kill -9, reap, and return the moment (time.time()) the signal was sent.

        From then on the process runs nothing (the kernel delivers SIGKILL within microseconds),
        and a survivor on this host sees it dead as soon as it is a zombie. The moment the reap
        returned came later: under two CPU burners a survivor once started a take-over 2.5 ms
        before it, and the overlap check took that for a task run twice at once.
        """
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        sent = time.time()
        self.process.wait(timeout=10)
        return sent

    def terminate(self, timeout: float) -> float:
        """SIGTERM and wait for the exit; return how many seconds it took (fails past `timeout`)."""
        assert self.process is not None
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout}s of SIGTERM\n{self.log_tail()}") from None
        return time.monotonic() - began

    def wait_exit(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """Cleanup: whatever state it is in, make sure the process is gone."""
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def post(self, path: str, **params: Any) -> Any:
        response = httpx.post(f"{self.url}{path}", params=params, timeout=60.0)
        response.raise_for_status()
        return response.json()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


@dataclass
class Worker(Server):
    """A worker process of the test service (proc_worker.py): its tasks, no HTTP server."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", WORKER_MODULE]

    def start_ready(self, timeout: float = 30.0) -> None:
        """Start, and wait for the start line this start logs (fails if the process exits first)."""
        self.start()
        wait_until(
            lambda: self.log_text().count(WORKER_STARTED) >= self.starts or not self.alive,
            timeout=timeout,
            what=f"{self.name} started\n{self.log_tail()}",
        )
        assert self.alive, f"{self.name} exited while starting\n{self.log_tail()}"


@dataclass
class Servers:
    """Starts servers that share one database and one record folder; kills them all at the end."""

    database_url: str
    folder: Path
    settings: dict[str, str]
    started: list[Server] = field(default_factory=list)

    @property
    def records(self) -> Path:
        return self.folder / "executions"

    def new(self, name: str, *, options: tuple[str, ...] = (), **overrides: str) -> Server:
        env = {"DATABASE_URL": self.database_url, "PROC_RECORD_DIR": str(self.records), **self.settings, **overrides}
        server = Server(name=name, env=env, log_path=self.folder / f"{name}.log", options=options)
        self.started.append(server)
        return server

    def new_worker(self, name: str, **overrides: str) -> Worker:
        env = {"DATABASE_URL": self.database_url, "PROC_RECORD_DIR": str(self.records), **self.settings, **overrides}
        worker = Worker(name=name, env=env, log_path=self.folder / f"{name}.log")
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()


@contextmanager
def servers(database_url: str, folder: Path, **settings: str) -> Iterator[Servers]:
    group = Servers(database_url=database_url, folder=folder, settings=settings)
    try:
        yield group
    finally:
        group.stop_all()


# -- reading what happened ------------------------------------------------------------------------


@dataclass(frozen=True)
class Execution:
    """One run of a task in one process: `end` is None when the process died during it."""

    task_id: str
    attempt: int
    pid: int
    start: float
    end: float | None


def read_executions(folder: Path) -> list[Execution]:
    starts: dict[tuple[str, int, int], float] = {}
    ends: dict[tuple[str, int, int], float] = {}
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            key = (entry["task_id"], entry["attempt"], entry["pid"])
            (starts if entry["event"] == "start" else ends)[key] = entry["at"]
    return [
        Execution(task_id=key[0], attempt=key[1], pid=key[2], start=at, end=ends.get(key))
        for key, at in sorted(starts.items(), key=lambda item: item[1])
    ]


def executions_by_task(executions: list[Execution]) -> dict[str, list[Execution]]:
    by_task: dict[str, list[Execution]] = defaultdict(list)
    for execution in executions:
        by_task[execution.task_id].append(execution)
    return by_task


class TaskTable:
    """Reads task rows straight from the database (works while every server is down)."""

    def __init__(self, database_url: str) -> None:
        self._engine: Engine = create_engine(database_url, poolclass=NullPool)

    def statuses(self) -> dict[str, str]:
        """Every written task's status (a task its instance still holds is in no table yet)."""
        with self._engine.connect() as connection:
            return dict(connection.execute(text("SELECT id, status FROM taskflow_tasks")).all())

    def ids_with_status(self, status: str) -> set[str]:
        return {task_id for task_id, value in self.statuses().items() if value == status}

    def row(self, task_id: str) -> Any:
        with self._engine.connect() as connection:
            return queries.get_task(connection, task_id)

    def attempts(self, task_id: str) -> list[Any]:
        """The task's attempt rows, in attempt order."""
        with self._engine.connect() as connection:
            return queries.list_attempts(connection, task_id)

    def all_reached(self, ids: list[str], status: str) -> bool:
        statuses = self.statuses()
        return all(statuses.get(task_id) == status for task_id in ids)

    def dispose(self) -> None:
        self._engine.dispose()
