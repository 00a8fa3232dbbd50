"""The operator's command line: `python -m app.taskflow COMMAND`, against the service's database.

It reads and acts through the same task manager and admin service as the dashboard, without
starting the manager: nothing runs in this process. A retry is recorded ownerless and the next
instance sweep (or start) runs it; a cancel of a running task is picked up by its owner.
Every action is written to the audit log with the operator's OS user as actor.

Exit codes: 0 done, 1 no such task or the action was refused, 2 bad input.
"""

from __future__ import annotations

import asyncio
import getpass
import importlib
import json
import os
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar

import click

from . import ages
from .admin.auth import Principal, Role
from .admin.filters import MAX_TEXT, as_utc
from .admin.schemas import TaskDetail, TaskPublic
from .admin.service import ActionRefused, AdminService
from .manager import CancelOutcome, TaskManager, TaskNotFound
from .metrics import MetricsSnapshot
from .models import TaskStatus
from .store import TaskFilter

# Where the service builds its configured manager; `--manager` or TASKFLOW_MANAGER override it.
DEFAULT_MANAGER = "app.tasks:configure_task_manager"
PURGE_CHUNK = 500

EXIT_NOT_FOUND = 1
EXIT_BAD_INPUT = 2

T = TypeVar("T")


class Operator:
    """What the commands share: the manager (not started), its admin service, and who acts."""

    def __init__(self, manager: TaskManager) -> None:
        self.manager = manager
        self.service = AdminService(manager, count_cap=None, metrics_ttl=0.0)
        self.principal = Principal(operator_name(), Role.ADMIN, via="basic")

    def close(self) -> None:
        self.manager.store.dispose()


def operator_name() -> str:
    """The OS user running the command, as the audit log's actor."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (some containers)
        return f"uid:{os.getuid()}"


def load_manager(target: str, database_url: str | None) -> TaskManager:
    """Import `module:attribute`, a TaskManager or a function returning a configured one."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        fail(f"--manager must look like module:attribute (e.g. {DEFAULT_MANAGER}), got {target!r}")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        fail(f"cannot load the task manager {target!r}: {error}")
    manager = found() if callable(found) and not isinstance(found, TaskManager) else found
    if not isinstance(manager, TaskManager):
        fail(f"{target!r} is not a TaskManager (or a function returning one)")
    if database_url:
        manager.configure(database_url=database_url)
    return manager


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def parse_time(value: str | None, option: str) -> datetime | None:
    if not value:
        return None
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        fail(f"{option} must be an ISO 8601 date and time like 2025-01-31T13:45 (UTC if no offset), got {value!r}")


def parse_age(value: str) -> timedelta:
    """'90' (seconds), '30m', '12h', '7d', '2w' (see ages.py)."""
    try:
        return ages.parse_age(value)
    except ValueError as error:
        fail(f"--older-than {error}")


def task_filter(
    status: str | None, name: str | None, since: str | None, until: str | None, q: str | None
) -> TaskFilter:
    for option, text in (("--name", name), ("-q", q)):
        if text is not None and (len(text) > MAX_TEXT or "\x00" in text):
            fail(f"{option} must be at most {MAX_TEXT} characters with no NUL")
    return TaskFilter(
        status=TaskStatus(status) if status else None,
        name=name or None,
        since=parse_time(since, "--since"),
        until=parse_time(until, "--until"),
        text=q or None,
    )


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


STATUS_CHOICE = click.Choice([status.value for status in TaskStatus])
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="print JSON (the JSON API's shapes)")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--manager",
    "target",
    envvar="TASKFLOW_MANAGER",
    default=DEFAULT_MANAGER,
    show_default=True,
    help="module:attribute of the service's TaskManager, or of a function that returns it configured",
)
@click.option("--database-url", envvar="TASKFLOW_DATABASE_URL", help="use this database instead of the service's")
@click.pass_context
def cli(context: click.Context, target: str, database_url: str | None) -> None:
    """Look at and act on the service's tasks, as the admin does."""
    context.obj = Operator(load_manager(target, database_url))
    context.call_on_close(context.obj.close)


pass_operator = click.make_pass_decorator(Operator)


@cli.command("list")
@click.option("--status", type=STATUS_CHOICE)
@click.option("--name", help="exact task name")
@click.option("--since", help="created at or after (ISO 8601; UTC if no offset)")
@click.option("--until", help="created before (ISO 8601; UTC if no offset)")
@click.option("-q", "q", help="text in the id, name or error")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0, 10**9), default=0, show_default=True)
@JSON_OPTION
@pass_operator
def list_tasks(
    operator: Operator,
    status: str | None,
    name: str | None,
    since: str | None,
    until: str | None,
    q: str | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """Tasks, newest first, filtered as the JSON API filters them."""
    page = run(operator.service.list_page(task_filter(status, name, since, until, q), limit=limit, offset=offset))
    if as_json:
        items = [TaskPublic.from_row(row).model_dump(mode="json") for row in page.rows]
        emit_json({"total": page.total, "limit": limit, "offset": offset, "items": items})
        return
    for row in page.rows:
        click.echo(f"{row.id}  {row.status:<11}  {when(row.created_at)}  {row.name}")
    click.echo(f"{len(page.rows)} of {page.total_label}", err=True)


@cli.command()
@click.argument("task_id")
@JSON_OPTION
@pass_operator
def show(operator: Operator, task_id: str, as_json: bool) -> None:
    """One task with its attempts."""
    view = run(operator.service.task(task_id))
    if view is None:
        fail(f"no task {task_id}", EXIT_NOT_FOUND)
    detail = TaskDetail.from_parts(view.row, view.attempts)
    if as_json:
        emit_json(detail.model_dump(mode="json"))
        return
    row = view.row
    lines = [
        ("id", row.id),
        ("name", row.name),
        ("status", row.status),
        (
            "attempt",
            f"{row.attempt} started (retries used {row.retries_used} of {row.max_attempts - 1}, "
            f"recoveries {row.recoveries})",
        ),
        ("created", when(row.created_at)),
        ("started", when(row.started_at)),
        ("finished", when(row.finished_at)),
        ("error", f"{row.error_type}: {row.error_message}" if row.error_type else "-"),
        ("retry of", row.retry_of or "-"),
        ("retried as", ", ".join(view.retried_as) or "-"),
    ]
    for label, value in lines:
        click.echo(f"{label:>10}  {value}")
    for attempt in view.attempts:
        error = f"  {attempt.error_type}: {attempt.error_message}" if attempt.error_type else ""
        click.echo(f"{'attempt':>10}  {attempt.number} {attempt.status} {when(attempt.started_at)}{error}")


@cli.command()
@click.argument("task_id")
@pass_operator
def retry(operator: Operator, task_id: str) -> None:
    """Enqueue a failed, cancelled or interrupted task again, as a new task linked to it."""
    new_id = act(lambda: operator.service.retry(operator.principal, task_id, detail="cli"), task_id)
    click.echo(new_id)


@cli.command("retry-failed")
@click.option("--name", help="only tasks of this name")
@click.option("--since", help="created at or after (ISO 8601; UTC if no offset)")
@click.option("--until", help="created before (ISO 8601; UTC if no offset)")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@pass_operator
def retry_failed(operator: Operator, name: str | None, since: str | None, until: str | None, limit: int) -> None:
    """Retry up to --limit failed tasks that were not retried yet."""
    chosen = task_filter(TaskStatus.FAILED.value, name, since, until, None)
    done, refused = run(operator.service.retry_failed(operator.principal, chosen, limit=limit))
    for old_id, new_id in done:
        click.echo(f"{old_id} -> {new_id}")
    for old_id, reason in refused:
        click.echo(f"{old_id} not retried: {reason}", err=True)
    click.echo(f"retried {len(done)}, refused {len(refused)}", err=True)


@cli.command()
@click.argument("task_id")
@pass_operator
def cancel(operator: Operator, task_id: str) -> None:
    """Cancel a pending task (it never runs) or ask a running one's instance to stop it."""
    outcome = act(lambda: operator.service.cancel(operator.principal, task_id), task_id)
    click.echo("cancelled" if outcome is CancelOutcome.CANCELLED else "cancelling: its instance stops it")


@cli.command()
@click.option(
    "--older-than", "age", required=True, help="finished this long ago or more: 90 (seconds), 30m, 12h, 7d, 2w"
)
@pass_operator
def purge(operator: Operator, age: str) -> None:
    """Delete finished tasks (and their attempts) older than --older-than."""
    cutoff = datetime.now(UTC) - parse_age(age)
    store = operator.manager.store
    deleted = 0
    while chunk := store.delete_finished_before(cutoff, limit=PURGE_CHUNK):
        deleted += chunk
    detail = json.dumps({"older_than": age, "cutoff": cutoff.isoformat(), "deleted": deleted, "via": "cli"})
    store.add_audit(actor=operator.principal.username, action="purge", task_id=None, detail=detail)
    click.echo(f"deleted {deleted} finished tasks")


@cli.command()
@JSON_OPTION
@pass_operator
def stats(operator: Operator, as_json: bool) -> None:
    """Tasks by status, success rate and durations."""
    snapshot: MetricsSnapshot = run(operator.service.metrics())
    summary = {
        "total": snapshot.total,
        **snapshot.counts,
        "success_rate": snapshot.success_rate or 0.0,
        "avg_duration_seconds": snapshot.avg_duration_seconds or 0.0,
        "durations": [vars(stats) for stats in snapshot.durations],
    }
    if as_json:
        emit_json(summary)
        return
    for status in TaskStatus:
        click.echo(f"{status.value:>12}  {snapshot.counts.get(status.value, 0)}")
    click.echo(f"{'total':>12}  {snapshot.total}")
    click.echo(f"{'success':>12}  {summary['success_rate']:.1%} of finished")
    for item in snapshot.durations:
        click.echo(f"{item.name:>12}  p50 {item.p50:.3f}s  p95 {item.p95:.3f}s  ({item.count} runs)")


def act(action: Callable[[], Coroutine[Any, Any, T]], task_id: str) -> T:
    """Run an audited action; a missing task or a refusal is exit code 1 with the reason."""
    try:
        return run(action())
    except TaskNotFound:
        fail(f"no task {task_id}", EXIT_NOT_FOUND)
    except ActionRefused as refused:
        fail(str(refused), EXIT_NOT_FOUND)


def main() -> None:
    cli(prog_name="python -m app.taskflow")
