"""Hooks: a task's on_failure and manager-wide listeners, sync or async, once per event, never in the way."""

from __future__ import annotations

import logging
import threading

import pytest

from app.taskflow import ManagedBackgroundTasks, TaskManager, TaskOutcome, TaskStatus

from .conftest import eventually, wait_for_status
from .test_recovery import plant


async def enqueue(manager: TaskManager, func, *args) -> str:
    tasks = ManagedBackgroundTasks(manager)
    task_id = tasks.add_task(func, *args)
    await tasks()
    return task_id


async def test_listeners_hear_each_event_once_sync_and_async(make_manager) -> None:
    manager = make_manager()
    heard: list[tuple[str, str, int, bool, str | None]] = []
    threads: set[str] = set()

    def sync_listener(outcome: TaskOutcome) -> None:
        threads.add(threading.current_thread().name)
        heard.append((outcome.event, outcome.task_name, outcome.attempt, outcome.will_retry, outcome.error_type))

    async def async_listener(outcome: TaskOutcome) -> None:
        heard.append((f"async {outcome.event}", outcome.task_name, outcome.attempt, outcome.will_retry, None))

    for event in ("succeeded", "failed", "gave_up"):
        manager.on(event, sync_listener)
    manager.on("gave_up", async_listener)

    @manager.task(retries=1, delay=0.0)
    async def broken() -> None:
        raise ValueError("broken")

    @manager.task
    def fine() -> str:
        return "ok"

    async with manager.lifespan():
        failed_id = await enqueue(manager, broken)
        await enqueue(manager, fine)
        await wait_for_status(manager, failed_id, TaskStatus.FAILED)
        await manager.wait_idle()
        await eventually(lambda: len(heard) == 5)
    assert sorted(heard) == sorted(
        [
            ("failed", "broken", 1, True, "ValueError"),
            ("failed", "broken", 2, False, "ValueError"),
            ("gave_up", "broken", 2, False, "ValueError"),
            ("async gave_up", "broken", 2, False, None),
            ("succeeded", "fine", 1, False, None),
        ]
    )
    assert threading.main_thread().name not in threads  # a sync hook never blocks the event loop


async def test_on_failure_is_called_when_the_task_gives_up_not_on_a_retried_attempt(make_manager) -> None:
    manager = make_manager()
    calls: list[tuple[str, int, str | None]] = []

    async def alert(outcome: TaskOutcome) -> None:
        calls.append((outcome.event, outcome.attempt, outcome.error_message))

    @manager.task(retries=2, delay=0.0, on_failure=alert)
    def flaky() -> None:
        raise ConnectionError("upstream down")

    @manager.task(on_failure=alert)
    def steady() -> None:
        return None

    async with manager.lifespan():
        task_id = await enqueue(manager, flaky)
        await enqueue(manager, steady)
        await wait_for_status(manager, task_id, TaskStatus.FAILED)
        await manager.wait_idle()
    # Stopping waited for the hooks still running: every call there was to be is in.
    assert calls == [("gave_up", 3, "upstream down")]


async def test_a_quarantined_task_calls_its_on_failure_and_the_quarantined_listeners(make_manager) -> None:
    manager = make_manager(max_recoveries=1)
    calls: list[tuple[str, str, str]] = []

    def on_failure(outcome: TaskOutcome) -> None:
        calls.append(("on_failure", outcome.event, outcome.task_id))

    async def listener(outcome: TaskOutcome) -> None:
        calls.append(("listener", outcome.event, outcome.task_id))

    manager.on("quarantined", listener)

    @manager.task(persist=True, name="poison", on_failure=on_failure)
    async def poison() -> None:
        return None

    task_id = plant(manager, "poison", status=TaskStatus.RUNNING.value, attempt=2, recoveries=1)[0]
    async with manager.lifespan():
        await wait_for_status(manager, task_id, TaskStatus.FAILED)
        await eventually(lambda: len(calls) == 2)
    assert sorted(calls) == [("listener", "quarantined", task_id), ("on_failure", "quarantined", task_id)]


async def test_a_hook_that_raises_is_logged_and_the_outcome_stands(make_manager, caplog) -> None:
    manager = make_manager()
    after: list[str] = []

    def broken_hook(outcome: TaskOutcome) -> None:
        raise RuntimeError("the hook itself is broken")

    async def later_hook(outcome: TaskOutcome) -> None:
        after.append(outcome.task_id)

    manager.on("succeeded", broken_hook)
    manager.on("succeeded", later_hook)

    @manager.task
    async def fine() -> str:
        return "ok"

    with caplog.at_level(logging.ERROR, logger="taskflow.hooks"):
        async with manager.lifespan():
            task_id = await enqueue(manager, fine)
            row = await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
            await eventually(lambda: any("broken_hook" in r.getMessage() for r in caplog.records))
            await eventually(lambda: after == [task_id])
    assert row.status == TaskStatus.SUCCESS.value
    [record] = [r for r in caplog.records if "broken_hook" in r.getMessage()]
    assert task_id in record.getMessage()
    assert record.exc_info is not None and "the hook itself is broken" in str(record.exc_info[1])


async def test_an_unknown_event_name_is_refused_with_the_valid_ones(make_manager) -> None:
    manager = make_manager()
    with pytest.raises(ValueError, match=r"'finished'.*succeeded, failed, gave_up, quarantined"):
        manager.on("finished", lambda outcome: None)
    with pytest.raises(TypeError, match="on_failure of task 'x' must be a function"):
        manager.task(name="x", on_failure="not callable")(lambda: None)  # type: ignore[arg-type]
