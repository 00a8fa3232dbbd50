"""With use_redis=yes the service publishes task events on Redis for its other instances."""

from __future__ import annotations

import json
import time
import uuid

import redis
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app

from .conftest import TEST_REDIS_URL, redis_reachable, require_service


def test_task_events_reach_other_instances_through_redis(settings: Settings) -> None:
    require_service("Redis", redis_reachable(TEST_REDIS_URL), "start it or set TEST_REDIS_URL")
    settings = settings.model_copy(update={"redis_url": TEST_REDIS_URL})
    listener = redis.Redis.from_url(TEST_REDIS_URL)
    pubsub = listener.pubsub()
    pubsub.subscribe("taskflow:events")
    pubsub.get_message(timeout=5)  # the subscription confirmation
    try:
        with TestClient(create_app(settings)) as client:
            email = f"{uuid.uuid4().hex[:8]}@example.com"
            task_id = client.post("/signup", params={"email": email}).json()["task_id"]
            seen: set[str] = set()
            deadline = time.monotonic() + 30
            while "success" not in seen:
                assert time.monotonic() < deadline, f"no success event for {task_id} on Redis; saw {seen}"
                message = pubsub.get_message(timeout=1)
                if message and message["type"] == "message":
                    event = json.loads(json.loads(message["data"])["event"])
                    if event["task_id"] == task_id:
                        seen.add(event["status"])
    finally:
        pubsub.close()
        listener.close()
