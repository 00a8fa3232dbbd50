"""A task manager for the command-line tests: `--manager tests.taskflow.cli_app:manager`."""

from __future__ import annotations

from app.taskflow import TaskManager

manager = TaskManager()


@manager.task(name="cli.add")
def add(a: int, b: int) -> int:
    return a + b


@manager.task(name="cli.explode")
def explode(message: str) -> None:
    raise RuntimeError(message)
