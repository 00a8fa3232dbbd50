"""Task specs (what @task_manager.task declared), keyed by one stable name."""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .arguments import Signature
from .options import TaskOptions, option_names
from .policy import RetryPolicy
from .process_executor import EXECUTORS, check_process_task


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """One registered task: its function, stable name and effective options."""

    name: str
    func: Callable[..., Any]
    # What the decorator was given, defaults filled in; the fields below are derived from it.
    options: TaskOptions = field(repr=False)
    policy: RetryPolicy
    # Seconds one attempt may run; None for no limit.
    timeout: float | None
    # Commit the row before add_task returns and re-run after a crash (at-least-once).
    persist: bool
    # Decided once, at registration (a partial or callable object is unwrapped).
    is_async: bool
    # A sync task's function runs in a worker process (executor="process").
    in_process: bool = False
    signature: Signature = field(repr=False)
    registered: bool = True

    def describe(self) -> dict[str, object]:
        """The task and every option it runs with (an option added to TaskOptions shows here too)."""
        options: dict[str, object] = {name: getattr(self.options, name) for name in option_names() if name != "name"}
        for exceptions in ("retry_on", "give_up_on"):
            options[exceptions] = [t.__name__ for t in getattr(self.options, exceptions)]
        options["on_failure"] = None if self.options.on_failure is None else qualified_name(self.options.on_failure)
        return {
            "name": self.name,
            "function": qualified_name(self.func),
            "is_async": self.is_async,
            **options,
        }


def qualified_name(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', '?')}"


def is_async_callable(obj: Any) -> bool:
    """True for coroutine functions, also behind functools.partial or an async __call__."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    return inspect.iscoroutinefunction(obj) or (callable(obj) and inspect.iscoroutinefunction(obj.__call__))


def build_spec(func: Callable[..., Any], options: TaskOptions, *, registered: bool = True) -> TaskSpec:
    """The spec of `func` with these options; bad options fail here, at decoration time."""
    if not callable(func):
        raise TypeError(f"@task needs a function, got {func!r}")
    timeout = options.timeout
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    if options.executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(map(repr, EXECUTORS))}, got {options.executor!r}")
    is_async = is_async_callable(func)
    if options.executor == "process":
        check_process_task(func, is_async=is_async)
    name = options.name
    task_name = name if name is not None else getattr(func, "__name__", None) or type(func).__name__
    if not isinstance(task_name, str) or not task_name.strip() or len(task_name) > 200:
        raise ValueError(f"task name must be a non-empty string of at most 200 characters, got {task_name!r}")
    return TaskSpec(
        name=task_name,
        func=func,
        options=options,
        policy=RetryPolicy.of(options),
        timeout=timeout,
        persist=options.persist,
        is_async=is_async,
        in_process=options.executor == "process",
        signature=Signature.of(func),
        registered=registered,
    )


class Registry:
    """Name -> spec, plus function -> spec so `add_task(func)` finds the decorated task."""

    def __init__(self) -> None:
        self._by_name: dict[str, TaskSpec] = {}
        self._by_func: dict[Any, TaskSpec] = {}
        self._lock = threading.Lock()

    def add(self, spec: TaskSpec) -> None:
        with self._lock:
            existing = self._by_name.get(spec.name)
            if existing is not None and existing.func is not spec.func:
                raise ValueError(
                    f"task name {spec.name!r} is already used by {existing.describe()['function']}; "
                    f"pass a unique name=... to @task"
                )
            self._by_name[spec.name] = spec
            self._by_func[spec.func] = spec

    def get(self, name: str) -> TaskSpec | None:
        return self._by_name.get(name)

    def for_function(self, func: Callable[..., Any]) -> TaskSpec:
        """The spec of a decorated function; a plain function gets a default, non-persisted spec."""
        spec = self._by_func.get(func)
        if spec is not None:
            return spec
        name = f"{getattr(func, '__module__', 'unknown')}.{getattr(func, '__qualname__', type(func).__name__)}"
        spec = build_spec(func, TaskOptions(name=name), registered=False)
        with self._lock:
            self._by_name.setdefault(spec.name, spec)
            self._by_func.setdefault(func, spec)
        return self._by_func[func]

    def all(self) -> list[TaskSpec]:
        return sorted(self._by_name.values(), key=lambda spec: spec.name)
