"""Sync tasks with `executor="process"`: CPU-bound work in a pool of worker processes.

A thread runs Python code one thread at a time (the GIL), so CPU-bound sync tasks in threads
share one core. With `@task_manager.task(executor="process")` a task runs in a worker process
instead. The arguments are JSON already, so a call sends the task's module, qualified name and
stored arguments; the worker imports the function (so it must be defined at module level),
validates the arguments against its type hints as in a thread, calls it and sends back the
result as JSON. Exceptions come back as themselves when they can be pickled (else as
TaskProcessError naming their type), with the worker's traceback as their cause, so retry_on
and give_up_on work as for any task.

Each worker is a process of its own, started with "spawn" (a clean interpreter: no copy of the
parent's threads, locks or database connections), when a call needs one, up to `processes`
(TaskflowConfig) at once. A worker serves one call at a time; an idle one is reused. A worker
that dies mid-call (killed, os._exit, out of memory) fails that attempt with TaskProcessError,
and the policy's retries apply. A call that is cancelled (its timeout ran out, a person
cancelled the task, the shutdown gave up waiting) kills its worker: a process, unlike a thread,
can be stopped. The pool stops its workers when the manager stops.

What stays with the parent: `current_task()` (progress, logs, cancellation checks) raises a
RuntimeError in a worker, and what the task logs goes to the worker's own stderr, not to the
attempt's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import logging
import multiprocessing
import pickle
import signal
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from pydantic_core import to_jsonable_python

from . import arguments as argument_codec

logger = logging.getLogger("taskflow.processes")

EXECUTORS = ("thread", "process")

# Seconds a worker gets to exit after it is asked to at shutdown, and after a terminate, before
# it is killed.
WORKER_EXIT_GRACE = 2.0


class TaskProcessError(RuntimeError):
    """A task's worker process died mid-call, or it raised something that cannot be pickled."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker process (the cause of the one raised here)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"\n\nraised in the task's worker process:\n{self.text}"


def check_process_task(func: Callable[..., Any], *, is_async: bool) -> None:
    """Refuse, at decoration, a task a worker process cannot import and call by its name."""
    where = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"
    if is_async:
        raise TypeError(
            f'executor="process" is for sync (def) tasks, and {where} is async: an async task runs on the '
            "event loop; move its CPU-bound part into a def task, or use the default executor"
        )
    if not inspect.isfunction(func):
        raise TypeError(
            f'executor="process" needs a plain function defined at module level, got {func!r}: the worker '
            "process imports the task by its module and name"
        )
    if "<" in func.__qualname__ or func.__module__ == "__main__":
        raise TypeError(
            f'executor="process" needs a function defined at module level of an importable module, and {where} '
            "is not (a nested function, a lambda, or a script run as __main__): the worker process imports "
            "the task by its module and name; move it to module level of a module"
        )


class ProcessPool:
    """Worker processes for process tasks; created lazily, at most `size` at once."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._context = multiprocessing.get_context("spawn")
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._slots: asyncio.Semaphore | None = None
        # A thread per busy worker waits for its reply (a blocking recv), outside the loop's pool.
        self._waiters = ThreadPoolExecutor(max_workers=size, thread_name_prefix="taskflow-process-wait")
        # Only the event loop touches the lists and the flag (no lock); threads start, wait on
        # and stop the processes.
        self._closed = False

    async def call(self, func: Callable[..., Any], name: str, arguments: argument_codec.JSONArguments) -> Any:
        """Run `func` with these stored arguments in a worker; its result as plain JSON values."""
        if self._closed:
            raise RuntimeError("the process pool is closed: the task manager is stopping")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._size)
        request = (func.__module__, func.__qualname__, name, argument_codec.encode(arguments))
        async with self._slots:
            worker = await self._take()
            try:
                reply = await asyncio.get_running_loop().run_in_executor(self._waiters, worker.ask, request)
            except BaseException:
                # Cancelled (a timeout, a person, the shutdown) or its worker died: either way,
                # this worker is not reused. Killing it also ends the thread waiting on its reply.
                worker.kill()
                self._forget(worker)
                await asyncio.to_thread(worker.stop)
                raise
            self._give_back(worker)
        return _unpack(reply, name)

    async def _take(self) -> _Worker:
        """An idle worker, else a new one."""
        found: _Worker | None = None
        dead: list[_Worker] = []
        while self._idle and found is None:
            worker = self._idle.pop()
            if worker.process.is_alive():
                found = worker
                self._busy.add(worker)
            else:
                dead.append(worker)  # killed while idle (the OOM killer, an operator)
        if dead:
            await asyncio.to_thread(_stop_all, dead)
        if found is not None:
            return found
        starting = asyncio.ensure_future(asyncio.to_thread(_Worker.start, self._context))
        try:
            found = await asyncio.shield(starting)
        except asyncio.CancelledError:
            # Cancelled while its worker starts: the worker, once started, waits idle for the
            # next call (the pool's close stops it), instead of living on untracked.
            starting.add_done_callback(self._started_for_nobody)
            raise
        self._busy.add(found)
        return found

    def _started_for_nobody(self, starting: asyncio.Future[_Worker]) -> None:
        if starting.cancelled():
            return
        if (error := starting.exception()) is not None:
            # Its caller was cancelled already, so no task fails of it; say it, or nobody would know.
            logger.warning("taskflow: a worker process started for a cancelled call failed to start: %r", error)
            return
        worker = starting.result()
        if not self._closed:
            self._idle.append(worker)
            return
        worker.kill()

    def _give_back(self, worker: _Worker) -> None:
        self._busy.discard(worker)
        if not self._closed:
            self._idle.append(worker)
            return
        worker.kill()  # the pool closed while it ran; killed, as a stop may wait and this is the loop

    def _forget(self, worker: _Worker) -> None:
        self._busy.discard(worker)

    async def close(self) -> None:
        """Stop every worker (a busy one is killed: its call was cancelled already at shutdown)."""
        self._closed = True
        workers = [*self._idle, *self._busy]
        self._idle.clear()
        self._busy.clear()
        await asyncio.to_thread(_stop_all, workers)
        self._waiters.shutdown(wait=False, cancel_futures=True)


def _stop_all(workers: list[_Worker]) -> None:
    for worker in workers:
        worker.stop()


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, process: BaseProcess, connection: Connection) -> None:
        self.process = process
        self.connection = connection
        self.killed = False

    @classmethod
    def start(cls, context: Any) -> _Worker:
        parent_end, child_end = context.Pipe()
        process = context.Process(target=serve, args=(child_end,), name="taskflow-process-worker", daemon=True)
        process.start()
        child_end.close()  # only the child holds it now: its death is then an EOF here
        return cls(process, parent_end)

    def ask(self, request: tuple[str, str, str, str]) -> tuple[str, Any]:
        try:
            self.connection.send(request)
            reply: tuple[str, Any] = self.connection.recv()
        except (EOFError, OSError):
            self.process.join(WORKER_EXIT_GRACE)
            raise TaskProcessError(
                f"the worker process running task {request[2]!r} died (exit code {self.process.exitcode}) "
                "before it replied"
            ) from None
        return reply

    def kill(self) -> None:
        self.killed = True
        with contextlib.suppress(ValueError):  # ValueError: closed already
            self.process.kill()

    def stop(self) -> None:
        """End the process (an idle one is asked, a busy or killed one is killed) and reap it."""
        if self.process.is_alive() and not self.killed:
            with contextlib.suppress(OSError):
                self.connection.send(None)  # an idle worker exits on its own
            self.process.join(WORKER_EXIT_GRACE)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(WORKER_EXIT_GRACE)
        self.connection.close()
        with contextlib.suppress(ValueError):
            self.process.close()


def _unpack(reply: tuple[str, Any], name: str) -> Any:
    kind, payload = reply
    if kind == "result":
        return json.loads(payload)
    error_bytes, type_name, message, remote_traceback = payload
    rebuilt: Any = None
    with contextlib.suppress(Exception):
        rebuilt = pickle.loads(error_bytes) if error_bytes is not None else None
    if not isinstance(rebuilt, Exception):
        rebuilt = TaskProcessError(f"task {name!r} raised {type_name}: {message}")
    error: Exception = rebuilt
    error.__cause__ = RemoteTraceback(remote_traceback)
    raise error


# -- in the worker process ------------------------------------------------------------------------


def serve(connection: Connection) -> None:
    """A worker's loop: one request at a time until told to stop (None) or the parent goes away."""
    from . import context

    context.in_worker_process = True
    # Ctrl+C reaches the whole process group: the parent's shutdown decides when a worker ends
    # (a running task's worker is killed then), not the interrupt.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    functions: dict[tuple[str, str], tuple[Callable[..., Any], argument_codec.Signature]] = {}
    while True:
        try:
            request = connection.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        module, qualname, name, stored = request
        try:
            key = (module, qualname)
            if key not in functions:
                func = _import(module, qualname)
                functions[key] = (func, argument_codec.Signature.of(func))
            func, signature = functions[key]
            args, kwargs = signature.load(name, argument_codec.decode(stored))
            result = func(*args, **kwargs)
            reply: tuple[str, Any] = ("result", _encode(result))
        except Exception as exc:
            reply = ("error", _describe(exc))
        connection.send(reply)


def _import(module: str, qualname: str) -> Callable[..., Any]:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return inspect.unwrap(target)  # type: ignore[no-any-return]


def _encode(result: Any) -> str:
    try:
        return argument_codec.encode_value(to_jsonable_python(result))
    except Exception:  # stored the way a thread task's result that is not JSON is stored
        return argument_codec.encode_value({"unserialisable": type(result).__name__})


def _describe(exc: Exception) -> tuple[bytes | None, str, str, str]:
    """The exception pickled (if it survives a round trip), its type, message and traceback."""
    pickled: bytes | None
    try:
        pickled = pickle.dumps(exc)
        pickle.loads(pickled)  # some exceptions pickle but cannot be rebuilt (a custom __init__)
    except Exception:
        pickled = None
    text = "".join(traceback.format_exception(exc))
    return pickled, type(exc).__name__, str(exc), text
