"""Events from Redis are untrusted: validated and capped like local ones; a malformed one is
dropped, counted and logged, and the events after it still arrive."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import pytest

from app.taskflow.events import MAX_PROGRESS_MESSAGE, MalformedEvent, TaskEvent

from .services import REDIS_URL, require_redis


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url  # the events do not depend on the database


def envelope(event: object, origin: str = "another-instance") -> str:
    return json.dumps({"origin": origin, "event": event if isinstance(event, str) else json.dumps(event)})


GOOD = {"task_id": "t-1", "name": "report", "status": "running"}
MALFORMED = [
    "not json at all",
    json.dumps([1, 2, 3]),
    json.dumps({"origin": "x"}),  # no event
    envelope("{broken"),
    envelope({**GOOD, "status": "exploded"}),
    envelope({**GOOD, "task_id": {"a": 1}}),
    envelope({**GOOD, "task_id": "x" * 37}),
    envelope({**GOOD, "name": None}),
    envelope({**GOOD, "progress_done": "lots"}),
    envelope({**GOOD, "progress_total": True}),
    envelope({**GOOD, "progress_message": 5}),
    envelope({**GOOD, "task_id": "a\x00b"}),
    envelope({**GOOD, "progress_message": "m" * 2_000_000}),  # 2 MB: not even parsed
]


@pytest.mark.parametrize(
    "fields",
    [{"status": "exploded"}, {"task_id": ""}, {"progress_done": float("inf")}, {"name": ["x"]}],
)
def test_from_json_refuses_an_invalid_event_saying_why(fields: dict[str, object]) -> None:
    with pytest.raises(MalformedEvent):
        TaskEvent.from_json(json.dumps({**GOOD, **fields}))


def test_from_json_caps_a_long_progress_message_like_a_local_one() -> None:
    event = TaskEvent.from_json(json.dumps({**GOOD, "progress_message": "m" * 5000, "progress_done": 3}))
    assert event.progress_message == "m" * MAX_PROGRESS_MESSAGE and event.progress_done == 3.0


async def test_malformed_redis_events_are_dropped_counted_and_logged(make_manager, caplog) -> None:
    require_redis()
    import redis.asyncio as aioredis

    caplog.set_level(logging.WARNING, logger="taskflow.events")
    channel = f"taskflow:test:{uuid.uuid4().hex}"
    manager = make_manager(redis_url=REDIS_URL, redis_channel=channel)
    publisher = aioredis.Redis.from_url(REDIS_URL)
    try:
        async with manager.lifespan(), manager.events.subscribe() as events:
            for payload in MALFORMED:
                await publisher.publish(channel, payload)
            long_message = {**GOOD, "progress_message": "m" * 600}
            await publisher.publish(channel, envelope(long_message))
            await publisher.publish(channel, envelope({**GOOD, "status": "success"}))
            received = [await asyncio.wait_for(events.get(), 20) for _ in range(2)]
    finally:
        await publisher.aclose()
    assert [event.status for event in received] == ["running", "success"]  # only the valid ones, in order
    assert received[0].progress_message == "m" * MAX_PROGRESS_MESSAGE
    assert manager.events.rejected_total == len(MALFORMED)
    warnings = [r.getMessage() for r in caplog.records if "malformed task event" in r.getMessage()]
    assert len(warnings) == len(MALFORMED)
    assert any("status must be one of" in w for w in warnings) and any("larger than" in w for w in warnings)
    assert all(len(w) < 1000 for w in warnings)  # the log never carries the payload itself
