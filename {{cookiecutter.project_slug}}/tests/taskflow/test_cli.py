"""`python -m app.taskflow`: the operator's command line, run as a process against a live database.

A started manager on the same database plays the web process: it runs the tasks, and picks up
what the command line records (a retry is written ownerless and taken by its recovery sweep).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.taskflow import EnqueueOptions, TaskManager, TaskStatus

from .cli_app import add, explode
from .conftest import ManagerFactory, wait_for_status

SERVICE = Path(__file__).resolve().parents[2]
MANAGER = "tests.taskflow.cli_app:manager"


async def taskflow(database_url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "app.taskflow", "--manager", MANAGER, "--database-url", database_url, *arguments]
    env = {**os.environ, "PYTHONPATH": str(SERVICE)}
    return await asyncio.to_thread(
        subprocess.run, command, cwd=SERVICE, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def json_of(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def audit(manager: TaskManager, action: str) -> list[Any]:
    entries = manager.store.list_audit(limit=50)
    return [entry for entry in entries if entry.action == action]


@pytest.fixture
async def web(make_manager: ManagerFactory) -> TaskManager:
    """The web process's manager, registered with the same tasks as the command line's."""
    from .cli_app import manager as cli_manager

    manager = make_manager(lease_seconds=2.0)
    for spec in cli_manager.registry.all():
        manager.registry.add(spec)
    await manager.start()
    return manager


async def test_list_show_and_stats_report_what_the_database_holds(web: TaskManager, database_url: str) -> None:
    done = web.enqueue(add, (2, 3), {})
    failed = web.enqueue(explode, ("no disk",), {})
    await wait_for_status(web, done, TaskStatus.SUCCESS)
    await wait_for_status(web, failed, TaskStatus.FAILED)

    listed = json_of(await taskflow(database_url, "list", "--json"))
    assert {item["task_id"] for item in listed["items"]} == {done, failed}
    only_failed = json_of(await taskflow(database_url, "list", "--status", "failed", "--json"))
    assert [item["task_id"] for item in only_failed["items"]] == [failed]

    shown = json_of(await taskflow(database_url, "show", failed, "--json"))
    assert shown["status"] == "failed" and shown["error"] == "no disk" and shown["error_type"] == "RuntimeError"
    assert [attempt["number"] for attempt in shown["attempts"]] == [1]
    readable = await taskflow(database_url, "show", done)
    assert readable.returncode == 0 and "success" in readable.stdout and "cli.add" in readable.stdout

    stats = json_of(await taskflow(database_url, "stats", "--json"))
    assert (stats["total"], stats["success"], stats["failed"], stats["success_rate"]) == (2, 1, 1, 0.5)


async def test_retry_from_the_command_line_is_run_by_a_live_instance_and_audited(
    web: TaskManager, database_url: str
) -> None:
    failed = web.enqueue(explode, ("once",), {})
    await wait_for_status(web, failed, TaskStatus.FAILED)

    result = await taskflow(database_url, "retry", failed)
    assert result.returncode == 0, result.stderr
    new_id = result.stdout.strip()
    # The web instance's recovery sweep takes the ownerless row and runs it (it fails again).
    row = await wait_for_status(web, new_id, TaskStatus.FAILED)
    assert row.retry_of == failed
    [entry] = audit(web, "retry")
    assert (entry.actor, entry.task_id) == (getpass.getuser(), failed)
    assert json.loads(entry.detail)["new_task_id"] == new_id

    succeeded = web.enqueue(add, (1, 1), {})
    await wait_for_status(web, succeeded, TaskStatus.SUCCESS)
    refused = await taskflow(database_url, "retry", succeeded)
    assert refused.returncode == 1 and "success" in refused.stderr


async def test_cancel_of_a_pending_task_means_it_never_runs(web: TaskManager, database_url: str) -> None:
    later = web.enqueue(add, (5, 5), {}, options=EnqueueOptions(delay=3600))
    result = await taskflow(database_url, "cancel", later)
    assert result.returncode == 0 and result.stdout.strip() == "cancelled", result.stderr
    assert (await wait_for_status(web, later, TaskStatus.CANCELLED)).started_at is None
    assert [entry.task_id for entry in audit(web, "cancel")] == [later]


async def test_purge_deletes_finished_tasks_older_than_the_age_given(web: TaskManager, database_url: str) -> None:
    done = web.enqueue(add, (1, 2), {})
    await wait_for_status(web, done, TaskStatus.SUCCESS)
    too_young = await taskflow(database_url, "purge", "--older-than", "1h")
    assert too_young.returncode == 0 and too_young.stdout.strip() == "deleted 0 finished tasks", too_young.stderr
    assert json_of(await taskflow(database_url, "stats", "--json"))["total"] == 1
    await asyncio.sleep(1.1)  # the task must have finished over a second before the cutoff
    result = await taskflow(database_url, "purge", "--older-than", "1s")
    assert result.returncode == 0 and result.stdout.strip() == "deleted 1 finished tasks", result.stderr
    assert await asyncio.to_thread(web.store.get, done) is None
    assert json.loads(audit(web, "purge")[0].detail)["deleted"] == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["list", "--status", "done"], "'done' is not one of"),
        (["list", "--since", "yesterday"], "--since must be an ISO 8601 date and time"),
        (["purge", "--older-than", "soon"], "--older-than must be a positive age"),
        (["purge", "--older-than", "0"], "--older-than must be a positive age"),
        (["list", "--limit", "0"], "--limit"),
    ],
)
async def test_bad_input_exits_2_with_what_was_wrong(database_url: str, arguments: list[str], message: str) -> None:
    result = await taskflow(database_url, *arguments)
    assert result.returncode == 2
    assert message in result.stderr


async def test_an_unknown_task_exits_1(database_url: str) -> None:
    for command in ("show", "retry", "cancel"):
        result = await taskflow(database_url, command, "00000000-0000-4000-8000-000000000000")
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert "no task 00000000-0000-4000-8000-000000000000" in result.stderr
