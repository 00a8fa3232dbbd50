"""Everything above the store calls its named operations: no SQL, no raw connection outside store/.

The boundary test reads every taskflow module outside app/taskflow/store/ with `ast`, so an
edit that reaches past the store's interface fails here, naming the file and the line.
"""

from __future__ import annotations

import ast
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from app.taskflow import TaskManager
from app.taskflow.models import TaskStatus, utcnow
from app.taskflow.store import Store, TaskFilter
from app.taskflow.store.writes import TASKS

from .sql import write_sql

TASKFLOW = Path(__file__).resolve().parents[2] / "app" / "taskflow"
STORE = TASKFLOW / "store"
# The store's submodules whose SQL only the store runs; engine.py opens the engines the
# migrations also use.
PRIVATE_SUBMODULES = {"queries", "leases", "writes", "logins", "retention", "hot", "intake"}
# A raw connection: `store.read(...)`, `store._write(...)`, `with store.writing()`, ...
RAW_ACCESS = {"read", "write", "_read", "_write", "reading", "writing"}
SUMMARY_LEAVES_OUT = {"arguments", "result", "traceback"}


def modules_above_the_store() -> list[Path]:
    return sorted(path for path in TASKFLOW.rglob("*.py") if STORE not in path.parents)


def _package_of(path: Path) -> list[str]:
    return ["app", *path.relative_to(TASKFLOW.parents[1]).parent.parts[1:]]


def _imported_modules(node: ast.Import | ast.ImportFrom, path: Path) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    package = _package_of(path)
    base = package[: len(package) - node.level + 1] if node.level else []
    module = ".".join([*base, *([node.module] if node.module else [])])
    # `from .store import queries` imports the submodule `store.queries`.
    return [module, *(f"{module}.{alias.name}" for alias in node.names)]


def _is_private(module: str) -> bool:
    parts = module.split(".")
    return parts[:3] == ["app", "taskflow", "store"] and len(parts) > 3 and parts[3] in PRIVATE_SUBMODULES


def boundary_breaches(path: Path, source: str | None = None) -> list[str]:
    """One line per breach in the module at `path` (its text, or `source` in its place)."""
    text = path.read_text(encoding="utf-8") if source is None else source
    tree = ast.parse(text, filename=str(path))
    where = path.relative_to(TASKFLOW.parents[1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            private = [module for module in _imported_modules(node, path) if _is_private(module)]
            if private:
                found.append(f"{where}:{node.lineno} imports {private[0]}: call a named Store operation instead")
        elif isinstance(node, ast.Attribute) and node.attr in RAW_ACCESS and "store" in ast.unparse(node.value):
            found.append(
                f"{where}:{node.lineno} uses {ast.unparse(node)}: add a named operation to the Store "
                "(SQL in app/taskflow/store/) instead of a raw connection"
            )
    return found


def test_no_module_above_the_store_reaches_its_sql_or_a_raw_connection() -> None:
    modules = modules_above_the_store()
    assert len(modules) > 30, f"found only {len(modules)} modules under {TASKFLOW}"
    breaches = [breach for path in modules for breach in boundary_breaches(path)]
    assert breaches == [], "the store's interface was bypassed:\n" + "\n".join(breaches)


def test_the_boundary_check_names_the_file_and_line_of_a_breach() -> None:
    source = (
        "from ..store import queries\n"
        "from ..store.writes import TASKS\n"
        "def count(manager):\n"
        "    return manager.store.read(lambda c: queries.count_tasks(c, None))\n"
    )
    breaches = boundary_breaches(TASKFLOW / "admin" / "sneaky_probe.py", source)
    assert [breach.split(" ")[0] for breach in breaches] == [
        "app/taskflow/admin/sneaky_probe.py:1",
        "app/taskflow/admin/sneaky_probe.py:2",
        "app/taskflow/admin/sneaky_probe.py:4",
    ]


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    manager = TaskManager(database_url=database_url)
    yield manager.store
    manager.store.dispose()


def plant(store: Store, **values: object) -> str:
    now = utcnow()
    row = {
        "id": str(uuid.uuid4()),
        "name": "report",
        "status": TaskStatus.FAILED.value,
        "arguments": '{"args": ["secret"], "kwargs": {}}',
        "result": '"big result"',
        "traceback": "Traceback ...",
        "created_at": now,
        "updated_at": now,
        **values,
    }
    write_sql(store, lambda c: c.execute(insert(TASKS), [row]))
    return str(row["id"])


def test_summaries_leave_out_the_big_text_columns(store: Store) -> None:
    task_id = plant(store)
    page = store.summary_page(TaskFilter(), limit=10, offset=0)
    by_id = store.summaries([task_id, "no-such-task"])
    listed = store.list(TaskFilter(), limit=10)
    assert [row.id for row in page.rows] == [row.id for row in by_id] == [row.id for row in listed] == [task_id]
    assert (page.total, page.exact) == (1, True)
    for rows in (page.rows, by_id, listed):
        assert SUMMARY_LEAVES_OUT.isdisjoint(rows[0]._fields)
    with_arguments = store.list(TaskFilter(), limit=10, with_arguments=True)
    assert with_arguments[0].arguments == '{"args": ["secret"], "kwargs": {}}'


def test_a_page_left_uncounted_says_so(store: Store) -> None:
    plant(store)
    page = store.summary_page(TaskFilter(), limit=10, offset=0, count=False)
    assert (len(page.rows), page.total, page.exact) == (1, -1, True)


def test_the_task_detail_holds_the_whole_row_its_retries_and_its_audit(store: Store) -> None:
    original = plant(store)
    retry = plant(store, status=TaskStatus.PENDING.value, retry_of=original)
    store.add_audit(actor="ann", action="retry", task_id=original)
    detail = store.task_detail(original)
    assert detail is not None
    assert (detail.row.traceback, detail.retried_as, [entry.actor for entry in detail.audit]) == (
        "Traceback ...",
        [retry],
        ["ann"],
    )
    assert store.task_detail("no-such-task") is None
    assert store.retryable_failed_ids(TaskFilter(), limit=10) == []  # retried already


def test_the_oldest_due_pending_task_is_the_one_waiting_longest(store: Store) -> None:
    now = utcnow()
    assert store.oldest_due_pending(now) is None
    plant(store, status=TaskStatus.PENDING.value, created_at=now - timedelta(minutes=5))
    plant(
        store,
        status=TaskStatus.PENDING.value,
        created_at=now - timedelta(hours=1),
        next_run_at=now + timedelta(hours=1),  # waiting longer, but not due yet
    )
    oldest = store.oldest_due_pending(now)
    assert oldest is not None and abs((oldest - (now - timedelta(minutes=5))).total_seconds()) < 1


def test_login_failures_and_revoked_sessions_are_stored_without_the_admin(store: Store) -> None:
    store.count_login_failure(["user:a"], now=1000.0, window=300.0)
    store.count_login_failure(["user:a"], now=1001.0, window=300.0)
    assert [(row.key, row.failures, row.window_start) for row in store.login_failures(["user:a"])] == [
        ("user:a", 2, 1000.0)
    ]
    store.count_login_failure(["user:a"], now=1400.0, window=300.0)  # the window ended: a new one
    assert [(row.failures, row.window_start) for row in store.login_failures(["user:a"])] == [(1, 1400.0)]
    store.clear_login_failures("user:a")
    assert store.login_failures(["user:a"]) == []
    store.revoke_session("session:s", now=1000.0, expires_at=2000.0)
    assert store.is_session_revoked("session:s") and not store.is_session_revoked("session:t")
