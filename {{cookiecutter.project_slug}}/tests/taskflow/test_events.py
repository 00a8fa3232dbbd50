"""Task events: in-process fan-out with bounded queues, and across instances through Redis."""

from __future__ import annotations

import asyncio
import uuid

from app.taskflow import ManagedBackgroundTasks, TaskStatus
from app.taskflow.events import EventBus, TaskEvent

from .services import REDIS_URL, require_redis


async def test_subscribers_receive_the_transitions_of_a_task(make_manager) -> None:
    manager = make_manager()

    @manager.task()
    async def hello() -> None:
        return None

    async with manager.lifespan(), manager.events.subscribe() as events:
        tasks = ManagedBackgroundTasks(manager)
        task_id = tasks.add_task(hello)
        await tasks()
        seen = []
        while TaskStatus.SUCCESS.value not in seen:
            event = await asyncio.wait_for(events.get(), 10)
            if event.task_id == task_id:
                seen.append(event.status)
    assert seen == ["pending", "running", "success"]


async def test_a_slow_subscriber_drops_events_instead_of_growing_without_bound() -> None:
    bus = EventBus(queue_size=5)
    bus.bind(asyncio.get_running_loop())
    async with bus.subscribe() as slow, bus.subscribe() as keeping_up:
        for n in range(100):
            bus.publish(TaskEvent(task_id=str(n), name="x", status="running"))
            if keeping_up.qsize():
                keeping_up.get_nowait()
        assert slow.qsize() == 5
        # Every drop is counted, per subscriber and in total: a stream knows when to re-read.
        assert (bus.dropped(slow), bus.dropped(keeping_up), bus.dropped_total) == (95, 0, 95)
    assert bus.subscriber_count == 0


async def test_events_of_a_task_on_one_instance_reach_a_dashboard_on_another(make_manager) -> None:
    require_redis()
    channel = f"taskflow:test:{uuid.uuid4().hex}"
    runner = make_manager(redis_url=REDIS_URL, redis_channel=channel)
    viewer = make_manager(redis_url=REDIS_URL, redis_channel=channel)

    @runner.task(name="remote")
    async def remote() -> None:
        return None

    async with viewer.lifespan(), runner.lifespan(), viewer.events.subscribe() as events:
        tasks = ManagedBackgroundTasks(runner)
        task_id = tasks.add_task(remote)
        await tasks()
        seen: list[str] = []
        while TaskStatus.SUCCESS.value not in seen:
            event = await asyncio.wait_for(events.get(), 10)
            if event.task_id == task_id:
                seen.append(event.status)
    assert seen[-1] == "success" and "running" in seen


async def test_an_unreachable_redis_is_reported_and_tasks_still_run(make_manager, caplog) -> None:
    manager = make_manager(redis_url="redis://127.0.0.1:1/0")

    @manager.task()
    async def local() -> None:
        return None

    async with manager.lifespan():
        tasks = ManagedBackgroundTasks(manager)
        task_id = tasks.add_task(local)
        await tasks()
        await manager.wait_idle()
        row = await asyncio.to_thread(manager.store.get, task_id)
    assert row.status == TaskStatus.SUCCESS
    assert any("cannot reach Redis at redis://127.0.0.1:1/0" in record.getMessage() for record in caplog.records)


async def test_a_watch_keeps_the_latest_event_of_its_task_only() -> None:
    bus = EventBus()
    bus.bind(asyncio.get_running_loop())
    with bus.watch("a") as watch:
        assert bus.listening  # publishers build events while anyone watches
        bus.publish(TaskEvent(task_id="a", name="x", status="running"))
        bus.publish(TaskEvent(task_id="b", name="x", status="success"))
        bus.publish(TaskEvent(task_id="a", name="x", status="success"))
        assert watch.changed.is_set()
        assert watch.latest == TaskEvent(task_id="a", name="x", status="success")
    assert not bus.listening
