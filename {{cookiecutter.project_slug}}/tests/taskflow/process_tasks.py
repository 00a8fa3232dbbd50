"""Task functions for the process executor tests: a worker process imports them by module path.

Each test registers them on its own manager (`register`), so the functions live here, at module
level, where a worker process can import them by name.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel

from app.taskflow import TaskManager, current_task


class Primes(BaseModel):
    below: int
    count: int
    pid: int


def count_primes(below: int) -> Primes:
    """CPU-bound: count the primes below `below` by trial division, and say where it ran."""
    count = sum(1 for n in range(2, below) if all(n % d for d in range(2, int(n**0.5) + 1)))
    return Primes(below=below, count=count, pid=os.getpid())


def refuse(reason: str) -> None:
    raise ValueError(f"refused: {reason}")


class OutOfPaper(Exception):
    """An exception pickle cannot rebuild: its __init__ takes two arguments, its args hold one."""

    def __init__(self, printer: str, tray: int) -> None:
        super().__init__(f"{printer} tray {tray} is empty")


def print_report(printer: str) -> None:
    raise OutOfPaper(printer, 2)


def die_once(marker: str) -> int:
    """Exit the worker process abruptly on the first call (the marker file says it happened)."""
    path = Path(marker)
    if not path.exists():
        path.write_text("died")
        os._exit(3)
    return os.getpid()


def hang_once(started: str) -> int:
    """First call: write our pid to `started` and wait until killed. Later calls: return our pid."""
    path = Path(started)
    if path.exists():
        return os.getpid()
    path.write_text(str(os.getpid()))
    while True:
        time.sleep(0.05)


def hang(started: str) -> None:
    """Write our pid to `started` and wait until killed."""
    Path(started).write_text(str(os.getpid()))
    while True:
        time.sleep(0.05)


def report_progress() -> None:
    current_task().progress(1, 2)


def register(manager: TaskManager, **options: object) -> None:
    """Declare every task above on `manager` with executor="process" (plus `options`)."""
    for func in (count_primes, refuse, print_report, die_once, hang_once, hang, report_progress):
        manager.task(name=func.__name__, executor="process", **options)(func)  # type: ignore[call-overload]
