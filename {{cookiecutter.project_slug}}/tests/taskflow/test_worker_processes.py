"""Worker processes: an enqueue-only web process (TASK_CONCURRENCY=0) and workers that run its tasks.

Each test gets its own port, database and folder. The workers are tests/taskflow/proc_worker.py
(app.taskflow.worker.run_worker with the test service's tasks); every task writes one line
when an execution starts and one when it ends (proc_app.py), so executions are counted across
processes, including those a kill -9 cut short.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from .procs import TaskTable, executions_by_task, read_executions, servers, wait_until

pytestmark = pytest.mark.processes

FAST = {"TASK_LEASE_SECONDS": "2", "TASK_POLL_INTERVAL": "0.1", "TASK_SHUTDOWN_TIMEOUT": "2"}
TASKS = 2000


def test_two_workers_run_what_an_enqueue_only_server_records_and_a_kill_9_reruns_no_finished_task(
    database_url: str, tmp_path: Path
) -> None:
    table = TaskTable(database_url)
    try:
        with servers(database_url, tmp_path, **FAST) as group:
            web = group.new("web", TASK_CONCURRENCY="0")
            doomed, survivor = group.new_worker("doomed"), group.new_worker("survivor")
            web.start_healthy()
            doomed.start_ready()
            survivor.start_ready()
            ids = web.post("/work", count=TASKS, seconds=0.02)["ids"]
            wait_until(lambda: len(table.ids_with_status("success")) >= TASKS // 4, timeout=60, what="a quarter done")
            doomed_pid = doomed.pid
            killed_at = doomed.kill()
            succeeded_before = table.ids_with_status("success")
            assert len(succeeded_before) < TASKS, "every task had finished before the kill"

            wait_until(lambda: table.all_reached(ids, "success"), timeout=60, what=f"all {TASKS} tasks done")
            assert web.alive and survivor.alive
            assert "enqueue only" in web.log_text()
    finally:
        table.dispose()

    executions = read_executions(group.records)
    runs_by_task = executions_by_task(executions)
    assert set(runs_by_task) == set(ids)
    ran_in = Counter(run.pid for run in executions)
    assert web.pid not in ran_in, "the enqueue-only server ran tasks"
    assert ran_in[doomed_pid] and ran_in[survivor.pid], f"the workers did not share the work: {ran_in}"
    for task_id in ids:
        runs = runs_by_task[task_id]
        if task_id in succeeded_before:
            assert [run for run in runs if run.start >= killed_at] == [], f"{task_id} succeeded, yet ran again: {runs}"
        attempts = [run.attempt for run in runs]
        assert len(attempts) == len(set(attempts)), f"task {task_id} ran one attempt twice: {runs}"
    cut_short = [run for run in executions if run.pid == doomed_pid and run.end is None]
    assert all(len(runs_by_task[run.task_id]) == 2 for run in cut_short), "a task the kill cut short did not rerun once"


def test_sigterm_drains_a_worker_and_releases_the_tasks_it_could_not_finish(database_url: str, tmp_path: Path) -> None:
    shutdown_timeout = 1.0
    table = TaskTable(database_url)
    try:
        settings = {**FAST, "TASK_SHUTDOWN_TIMEOUT": str(shutdown_timeout), "TASK_CONCURRENCY": "4"}
        with servers(database_url, tmp_path, **settings) as group:
            web = group.new("web", TASK_CONCURRENCY="0")
            worker = group.new_worker("worker")
            web.start_healthy()
            worker.start_ready()
            short_ids = web.post("/work", count=2, seconds=0.5)["ids"]
            long_ids = web.post("/work", count=2, seconds=30)["ids"]
            wait_until(lambda: len(read_executions(group.records)) == 4, timeout=20, what="all four tasks running")
            took = worker.terminate(timeout=shutdown_timeout + 10)
            assert took < shutdown_timeout + 5, f"exit took {took:.1f}s with a {shutdown_timeout}s shutdown timeout"
            assert "stopped" in worker.log_tail(5)

            assert table.all_reached(short_ids, "success"), "a running task did not finish while the worker drained"
            assert table.all_reached(long_ids, "pending"), "a task the worker could not finish was not released"
            assert all(table.row(task_id).owner is None for task_id in long_ids)
            for task_id in long_ids:
                assert [attempt.status for attempt in table.attempts(task_id)] == ["released"]
    finally:
        table.dispose()
