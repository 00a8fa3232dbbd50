"""Every @task option's default is written once (TaskOptions), is the one the docs give, and is
the one the decorator, the retry policy and the registry use."""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path
from typing import Any

import pytest

import app.taskflow
from app.taskflow import RetryPolicy, TaskManager, TaskStatus
from app.taskflow.options import TaskOptions, option_names

from .conftest import ADMIN, wait_for_status

README = Path(app.taskflow.__file__).parent / "README.md"


def documented_defaults() -> dict[str, str]:
    """The options table of the taskflow README: option -> its default, as written there."""
    section = README.read_text().split("## @task_manager.task options", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (.+?) \|", section, flags=re.MULTILINE)
    assert rows, "the README has no options table"
    return dict(rows)


def as_python(documented: str) -> Any:
    """A default as the docs write it (`0`, `(Exception,)`, `None`, function name) as a value."""
    if not documented.startswith("`"):
        assert documented == "function name", documented
        return None  # no name given: the function's own
    # The docs write Python literals, and exception classes by name.
    return eval(documented.strip("`"), {"__builtins__": {}, "Exception": Exception})


def test_the_docs_list_every_option_with_the_default_it_has() -> None:
    documented = documented_defaults()
    assert tuple(documented) == option_names()
    defaults = TaskOptions()
    for option, written in documented.items():
        assert getattr(defaults, option) == as_python(written), option


def test_the_decorator_accepts_exactly_the_task_options() -> None:
    keyword_form = [
        overload
        for overload in typing.get_overloads(TaskManager.task)
        if any(p.kind is p.KEYWORD_ONLY for p in inspect.signature(overload).parameters.values())
    ]
    assert len(keyword_form) == 1
    assert tuple(inspect.signature(keyword_form[0]).parameters)[1:] == option_names()
    with pytest.raises(TypeError, match=r"unknown option\(s\) 'retry'; the options are retries, delay"):
        TaskManager().task(retry=3)


def test_the_retry_policy_defaults_are_the_task_defaults() -> None:
    assert RetryPolicy() == RetryPolicy.of(TaskOptions())


def as_json(value: Any) -> Any:
    """A default as the registry's JSON gives it: tuples as lists, exception classes by name."""
    if isinstance(value, tuple):
        return [item.__name__ if isinstance(item, type) else item for item in value]
    return value


def expected_registry_entry(name: str) -> dict[str, Any]:
    # Tuple options (retry_on, give_up_on, and any option a team adds) are lists in the JSON.
    entry = {option: as_json(as_python(text)) for option, text in documented_defaults().items() if option != "name"}
    return {"name": name, **entry}


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url  # options only: one engine is enough


async def test_tasks_declared_without_options_run_with_the_documented_defaults(
    make_manager: Any, make_app: Any, client_for: Any
) -> None:
    manager = make_manager()

    @manager.task
    def bare() -> None:
        return None

    @manager.task()
    def called() -> None:
        return None

    app = make_app(manager)
    async with client_for(app, auth=ADMIN) as client:
        registry = {entry["name"]: entry for entry in (await client.get("/tasks/registry")).json()}
        page = await client.get("/tasks/dashboard/registry")
    for name in ("bare", "called"):
        entry = {key: value for key, value in registry[name].items() if key not in ("function", "is_async")}
        assert entry == expected_registry_entry(name)
    assert page.status_code == 200 and "<td>Exception</td>" in page.text


async def test_changing_a_default_in_task_options_changes_what_tasks_do(
    make_manager: Any, make_app: Any, client_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The one place the defaults are written: a changed default reaches the decorator (both
    # forms), the retries a task gets, and the registry page.
    monkeypatch.setitem(TaskOptions.__init__.__kwdefaults__, "retries", 2)
    manager = make_manager()
    runs: list[int] = []

    @manager.task
    def flaky() -> None:
        runs.append(1)
        raise ValueError("always")

    @manager.task(persist=True)
    def other() -> None:
        return None

    app = make_app(manager)
    async with client_for(app, auth=ADMIN) as client:
        task_id = manager.enqueue(flaky)
        row = await wait_for_status(manager, task_id, TaskStatus.FAILED)
        registry = {entry["name"]: entry for entry in (await client.get("/tasks/registry")).json()}
    assert len(runs) == 3 and row.retries_used == 2 and row.max_attempts == 3
    assert registry["flaky"]["retries"] == registry["other"]["retries"] == 2
