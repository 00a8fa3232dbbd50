"""Reliability with real processes: the test service under uvicorn, killed, paused, cut off.

Each test gets its own port(s), database and folder. Tasks write one line when an execution
starts and one when it ends (see proc_app.py), so executions are counted across processes.
Short leases and polls keep the module fast; every wait is on a condition with a deadline.
"""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from .procs import Execution, Server, TaskTable, executions_by_task, read_executions, servers, wait_until
from .services import POSTGRES_URL, require_postgres

pytestmark = pytest.mark.processes

FAST = {"TASK_LEASE_SECONDS": "2", "TASK_POLL_INTERVAL": "0.1", "TASK_SHUTDOWN_TIMEOUT": "2"}


@pytest.fixture
def table(database_url: str) -> Iterator[TaskTable]:
    tasks = TaskTable(database_url)
    yield tasks
    tasks.dispose()


def started_after(runs: list[Execution], moment: float) -> list[Execution]:
    return [run for run in runs if run.start >= moment]


def assert_no_attempt_ran_twice_at_once(executions: list[Execution], *, died_at: dict[int, float]) -> None:
    """Attempt numbers are unique per task, and one task's executions never overlap in time.

    An execution cut short by a kill has no end: it ended when its process died (`died_at`).
    """
    for task_id, runs in executions_by_task(executions).items():
        attempts = [run.attempt for run in runs]
        assert len(attempts) == len(set(attempts)), f"task {task_id} ran one attempt twice: {runs}"
        ordered = sorted(runs, key=lambda run: run.start)
        for earlier, later in itertools.pairwise(ordered):
            ended = earlier.end if earlier.end is not None else died_at[earlier.pid]
            assert ended <= later.start, f"task {task_id} ran twice at once: {earlier} and {later}"
            assert earlier.attempt < later.attempt, f"task {task_id}: attempt numbers went backwards: {runs}"


def test_kill_9_mid_run_loses_nothing_and_reruns_no_finished_task(
    database_url: str, tmp_path: Path, table: TaskTable
) -> None:
    # A 30 s lease: the restarted process must take over at once because it sees the old pid is
    # gone (same host), not because the lease ran out; the deadline below is shorter than the lease.
    with servers(database_url, tmp_path, **{**FAST, "TASK_LEASE_SECONDS": "30"}) as group:
        server = group.new("a")
        server.start_healthy()
        ids = server.post("/work", count=200, seconds=0.1)["ids"]
        wait_until(lambda: len(table.ids_with_status("success")) >= 40, timeout=30, what="40 tasks done")
        first_pid = server.pid
        killed_at = server.kill()
        succeeded_before = table.ids_with_status("success")
        assert 0 < len(succeeded_before) < len(ids)

        server.start_healthy()
        wait_until(lambda: table.all_reached(ids, "success"), timeout=20, what="all 200 tasks done after restart")

    runs_by_task = executions_by_task(read_executions(group.records))
    assert set(runs_by_task) == set(ids)
    for task_id in ids:
        runs = runs_by_task[task_id]
        before, after = [run for run in runs if run.start < killed_at], started_after(runs, killed_at)
        assert len(before) <= 1, f"task {task_id} ran twice before the kill: {runs}"
        if task_id in succeeded_before:
            assert after == [], f"task {task_id} had succeeded, yet ran again after the restart: {runs}"
        else:
            # At least once: a task cut short (or whose success was not yet written) runs again, once.
            assert len(after) == 1, f"task {task_id} should run exactly once after the restart: {runs}"
    assert_no_attempt_ran_twice_at_once(read_executions(group.records), died_at={first_pid: killed_at})


def test_two_servers_share_the_database_and_one_survives_the_others_kill(
    database_url: str, tmp_path: Path, table: TaskTable
) -> None:
    with servers(database_url, tmp_path, **FAST) as group:
        doomed, survivor = group.new("doomed"), group.new("survivor")
        doomed.start_healthy()
        survivor.start_healthy()
        # A second each, 32 at a time: after the first wave the doomed server still has work for
        # three seconds, however late a loaded machine notices the 20th success and kills it.
        # (At 0.1 s the window was 0.3 s: under two CPU burners the kill once came after all
        # 100 had finished, and the survivor had nothing to take over.)
        doomed_ids = doomed.post("/work", count=100, seconds=1.0)["ids"]
        survivor_ids = survivor.post("/work", count=100, seconds=0.1)["ids"]
        wait_until(
            lambda: len(table.ids_with_status("success") & set(doomed_ids)) >= 20, timeout=30, what="20 tasks done"
        )
        doomed_pid = doomed.pid
        killed_at = doomed.kill()

        all_ids = doomed_ids + survivor_ids
        wait_until(lambda: table.all_reached(all_ids, "success"), timeout=30, what="every task done by the survivor")
        assert survivor.alive and survivor.healthy()

    executions = read_executions(group.records)
    assert {run.task_id for run in executions} == set(all_ids)
    taken_over = {run.task_id for run in executions if run.pid == survivor.pid} & set(doomed_ids)
    assert taken_over, "the survivor took none of the killed server's tasks"
    assert all(run.end is not None for run in executions if run.pid == survivor.pid)
    assert_no_attempt_ran_twice_at_once(executions, died_at={doomed_pid: killed_at})
    # Each attempt the kill cut short is on record, with its start and the dead instance, before the rerun.
    cut_short = [run for run in executions if run.pid == doomed_pid and run.end is None]
    assert cut_short, "the kill cut no attempt short"
    for run in cut_short:
        attempts = table.attempts(run.task_id)
        crashed = [a for a in attempts if a.number == run.attempt]
        assert [(a.status, f":{doomed_pid}:" in a.owner) for a in crashed] == [("crashed", True)], attempts
        assert abs(crashed[0].started_at.timestamp() - run.start) < 1.0, (crashed[0], run)
        assert attempts[-1].number > run.attempt and attempts[-1].status == "success", attempts


def test_sigterm_exits_within_the_deadline_and_long_tasks_finish_after_restart(
    database_url: str, tmp_path: Path, table: TaskTable
) -> None:
    shutdown_timeout = 1.0
    with servers(database_url, tmp_path, **{**FAST, "TASK_SHUTDOWN_TIMEOUT": str(shutdown_timeout)}) as group:
        server = group.new("a")
        server.start_healthy()
        short_ids = server.post("/work", count=3, seconds=0.3)["ids"]
        long_ids = server.post("/work", count=3, seconds=4)["ids"]
        wait_until(
            lambda: len({run.task_id for run in read_executions(group.records)}) == 6,
            timeout=20,
            what="all six tasks running",
        )
        took = server.terminate(timeout=shutdown_timeout + 10)
        assert took < shutdown_timeout + 5, f"exit took {took:.1f}s with a {shutdown_timeout}s shutdown timeout"

        # Short tasks finished while draining; long ones were cancelled and handed back.
        assert table.all_reached(short_ids, "success")
        assert table.all_reached(long_ids, "pending")
        assert all(table.row(task_id).owner is None for task_id in long_ids)

        server.start_healthy()
        wait_until(lambda: table.all_reached(long_ids, "success"), timeout=20, what="long tasks done after restart")
    runs_by_task = executions_by_task(read_executions(group.records))
    assert all(len(runs_by_task[task_id]) == 1 for task_id in short_ids)
    assert all(len(runs_by_task[task_id]) == 2 for task_id in long_ids)
    # Released at shutdown is not a crash: it does not count towards the crash-loop cap.
    assert all(table.row(task_id).recoveries == 0 for task_id in long_ids)


def test_tasks_released_at_sigterm_start_on_the_surviving_server_within_its_poll_interval(
    database_url: str, tmp_path: Path, table: TaskTable
) -> None:
    # A 30 s lease: the survivor's recovery sweep comes every 12-18 s, so only the per-tick claim
    # of released rows can start the tasks within the margin below.
    poll, margin = 0.1, 3.0
    settings = {**FAST, "TASK_LEASE_SECONDS": "30", "TASK_POLL_INTERVAL": str(poll), "TASK_SHUTDOWN_TIMEOUT": "0.5"}
    with servers(database_url, tmp_path, **settings) as group:
        leaving, survivor = group.new("leaving"), group.new("survivor")
        leaving.start_healthy()
        survivor.start_healthy()
        ids = leaving.post("/work", count=3, seconds=3)["ids"]
        wait_until(lambda: len(read_executions(group.records)) == 3, timeout=20, what="all three tasks running")
        leaving_pid, survivor_pid = leaving.pid, survivor.pid
        leaving.terminate(timeout=15)
        wait_until(lambda: table.all_reached(ids, "success"), timeout=30, what="released tasks done by the survivor")

    for task_id in ids:
        released, rerun = table.attempts(task_id)
        assert (released.number, released.status, f":{leaving_pid}:" in released.owner) == (1, "released", True)
        assert (rerun.number, rerun.status, f":{survivor_pid}:" in rerun.owner) == (2, "success", True)
        waited = (rerun.started_at - released.finished_at).total_seconds()
        assert 0 <= waited < poll + margin, f"task {task_id} started {waited:.2f}s after its release"
        assert (table.row(task_id).recoveries, table.row(task_id).retries_used) == (0, 0)


def test_sigterm_under_several_uvicorn_workers_drains_and_releases_every_worker(
    sqlite_url: str, tmp_path: Path
) -> None:
    table = TaskTable(sqlite_url)
    try:
        with servers(sqlite_url, tmp_path, **{**FAST, "TASK_SHUTDOWN_TIMEOUT": "1"}) as group:
            server = group.new("workers", options=("--workers", "2"))
            server.start_healthy()
            ids = [task_id for _ in range(8) for task_id in server.post("/work", count=1, seconds=30)["ids"]]
            wait_until(lambda: len(read_executions(group.records)) == len(ids), timeout=20, what="all tasks running")
            took = server.terminate(timeout=15)
            assert took < 1 + 8, f"exit took {took:.1f}s with a 1 s shutdown timeout"
            assert table.all_reached(ids, "pending")
            assert all(table.row(task_id).owner is None for task_id in ids), "a worker did not release its tasks"
    finally:
        table.dispose()


def test_task_that_kills_its_process_is_quarantined_after_the_cap(sqlite_url: str, tmp_path: Path) -> None:
    max_recoveries = 2
    table = TaskTable(sqlite_url)
    try:
        with servers(sqlite_url, tmp_path, **{**FAST, "TASK_MAX_RECOVERIES": str(max_recoveries)}) as group:
            server = group.new("a")
            server.start_healthy()
            task_id = server.post("/crash")["task_id"]

            # A supervisor (as systemd or Kubernetes would be): restart the service whenever it dies.
            def quarantined() -> bool:
                if not server.alive:
                    assert server.starts < 10, f"still crash-looping after {server.starts} starts"
                    server.start()
                row = table.row(task_id)  # None until the server has moved it out of its intake file
                return row is not None and row.status == "failed"

            wait_until(quarantined, timeout=90, interval=0.1, what="the crashing task quarantined")
            assert server.wait_healthy(), "the service did not keep serving after the quarantine"
            survivor_ids = server.post("/work", count=3, seconds=0)["ids"]
            wait_until(lambda: table.all_reached(survivor_ids, "success"), timeout=20, what="work after quarantine")

            row = table.row(task_id)
            assert "exceeded recovery attempts" in row.error_message
            assert row.recoveries == max_recoveries + 1
            crashes = [run for run in read_executions(group.records) if run.task_id == task_id]
            assert len(crashes) == max_recoveries + 1
            assert server.starts == max_recoveries + 2
            assert server.log_text().count(f"ERROR taskflow: taskflow: task {task_id} (crash) quarantined") == 1
    finally:
        table.dispose()


def test_postgres_outage_loses_no_row_and_work_resumes(tmp_path: Path) -> None:
    require_postgres()
    from .services import postgres_database

    with postgres_database() as database_url, servers(database_url, tmp_path, **FAST) as group:
        table = TaskTable(database_url)
        try:
            server = group.new("a", PGAPPNAME="taskflow-proc-a")
            server.start_healthy()
            ids = server.post("/work", count=100, seconds=0.2)["ids"]
            name = make_url(database_url).database
            for _ in range(3):
                wait_until(lambda: read_executions(group.records), timeout=20, what="tasks running")
                make_postgres_unreachable(str(name), seconds=1.0)
            wait_until(lambda: table.all_reached(ids, "success"), timeout=40, what="all tasks done after the outages")
            assert len(table.statuses()) == len(ids)
            assert server.alive
            assert " ERROR taskflow" in server.log_text(), "the outage was not logged as an error"
        finally:
            table.dispose()
    assert_ran_exactly_once(read_executions(group.records), ids)


def test_sqlite_file_locked_by_another_process_loses_no_row_and_work_resumes(sqlite_url: str, tmp_path: Path) -> None:
    table = TaskTable(sqlite_url)
    try:
        with servers(sqlite_url, tmp_path, **FAST) as group:
            server = group.new("a")
            server.start_healthy()
            ids = server.post("/work", count=100, seconds=0.2)["ids"]
            wait_until(lambda: read_executions(group.records), timeout=20, what="tasks running")
            # Longer than the 2 s lease: renewals wait on the lock, so the leases run out meanwhile.
            hold_sqlite_write_lock(make_url(sqlite_url).database or "", seconds=3.0)
            wait_until(lambda: table.all_reached(ids, "success"), timeout=40, what="all tasks done after the lock")
            assert len(table.statuses()) == len(ids)
            assert server.alive
    finally:
        table.dispose()
    assert_ran_exactly_once(read_executions(group.records), ids)


def test_kill_9_while_tasks_are_only_in_the_intake_file_loses_none_and_a_restart_runs_each_once(
    sqlite_url: str, tmp_path: Path
) -> None:
    database = make_url(sqlite_url).database or ""
    table = TaskTable(sqlite_url)
    with table_disposed(table), servers(sqlite_url, tmp_path, **{**FAST, "TASK_LEASE_SECONDS": "30"}) as group:
        server = group.new("a")
        server.start_healthy()
        # Hold the database's write lock: the server's writer cannot move anything out of its
        # intake file, and no task can be claimed. The enqueues commit into the intake file alone.
        blocker = sqlite3.connect(database, isolation_level=None, timeout=30)
        try:
            blocker.execute("BEGIN EXCLUSIVE")
            ids = server.post("/work", count=50, seconds=0.05)["ids"]
            intake_files = list(Path(f"{database}-intake").glob("*.db"))
            killed_at = server.kill()
        finally:
            blocker.close()  # releases the lock
        assert table.statuses() == {}  # nothing reached the task table
        assert read_executions(group.records) == []  # and nothing ran
        assert len(intake_files) == 1

        server.start_healthy()  # a new process: it finds the dead one's file and moves its rows
        wait_until(lambda: table.all_reached(ids, "success"), timeout=30, what="all 50 tasks done after restart")
        assert not intake_files[0].exists()
    runs = read_executions(group.records)
    assert all(run.start >= killed_at for run in runs)
    assert_ran_exactly_once(runs, ids)


def test_paused_server_loses_its_tasks_to_a_sibling_and_its_late_results_are_fenced(
    sqlite_url: str, tmp_path: Path
) -> None:
    table = TaskTable(sqlite_url)
    try:
        with servers(sqlite_url, tmp_path, **{**FAST, "TASK_CONCURRENCY": "20"}) as group:
            paused, sibling = group.new("paused"), group.new("sibling")
            paused.start_healthy()
            sibling.start_healthy()
            ids = paused.post("/work", count=10, seconds=3)["ids"]
            wait_until(lambda: len(read_executions(group.records)) == 10, timeout=20, what="ten tasks running")
            with sqlite_writer_paused(paused, make_url(sqlite_url).database or ""):
                # The paused process is alive (no fast path): the sibling waits out the 2 s lease.
                wait_until(
                    lambda: (
                        {run.task_id for run in read_executions(group.records) if run.pid == sibling.pid} == set(ids)
                    ),
                    timeout=20,
                    what="the sibling took every task over",
                )
            wait_until(lambda: table.all_reached(ids, "success"), timeout=20, what="all tasks done")
            # Let the resumed process try to record its stale outcomes, then check they were refused.
            wait_until(
                lambda: len([run for run in read_executions(group.records) if run.end is not None]) == 20,
                timeout=20,
                what="both executions of every task ended",
            )
            assert paused.alive and paused.healthy()
        for task_id in ids:
            row = table.row(task_id)
            assert row.attempt == 2 and str(sibling.pid) in row.owner, f"a stale outcome was recorded: {row}"
    finally:
        table.dispose()


# -- helpers ----------------------------------------------------------------------------------------


@contextmanager
def table_disposed(table: TaskTable) -> Iterator[TaskTable]:
    try:
        yield table
    finally:
        table.dispose()


def assert_ran_exactly_once(executions: list[Execution], ids: list[str]) -> None:
    """Nothing crashed, so an outage or a lock must not cause a single re-run."""
    runs_by_task = executions_by_task(executions)
    reruns = {task_id: runs for task_id, runs in runs_by_task.items() if len(runs) != 1}
    assert set(runs_by_task) == set(ids)
    assert not reruns, f"{len(reruns)} task(s) ran more than once: {list(reruns.items())[:3]}"


def make_postgres_unreachable(database: str, *, seconds: float) -> None:
    """Refuse new connections to `database` and drop the open ones for `seconds`, then allow them again."""
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false'))
            try:
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = :db AND pid <> pg_backend_pid()"
                    ),
                    {"db": database},
                )
                time.sleep(seconds)  # the outage itself: its length is the input of the test, not a wait
            finally:
                connection.execute(text(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true'))
    finally:
        admin.dispose()


def hold_sqlite_write_lock(path: str, *, seconds: float) -> None:
    """Hold the database's write lock from another connection (BEGIN EXCLUSIVE) for `seconds`."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        time.sleep(seconds)  # the lock's length is the input of the test, not a wait
        connection.execute("COMMIT")
    finally:
        connection.close()


@contextmanager
def sqlite_writer_paused(server: Server, path: str) -> Iterator[None]:
    """SIGSTOP the server at a moment it holds no write lock (else the sibling could not write)."""

    def stopped_without_lock() -> bool:
        os.kill(server.pid, signal.SIGSTOP)
        probe = sqlite3.connect(path, isolation_level=None, timeout=0.2)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            os.kill(server.pid, signal.SIGCONT)  # caught mid-write: let it finish and try again
            return False
        finally:
            probe.close()

    wait_until(stopped_without_lock, timeout=10, what="pausing the server outside a write")
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)
