"""Task change events: published on every transition, fanned out to live subscribers.

In-process by default. With a Redis URL, events are also published on a Redis channel and
events from other instances are received from it, so a dashboard on one instance sees tasks
that run on another. Subscribers get bounded queues that drop on overflow: an event is a
hint to refresh a row, and the database stays the source of truth. Drops are counted per
subscriber (so a subscriber knows it must re-read) and in total (for the Prometheus metrics).

Events from Redis are untrusted input (anyone who can publish on the channel can send them):
each is validated and capped like a local one, and a malformed one is dropped, counted and
logged, never delivered, so it cannot end a dashboard's stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from ._loops import call_in_loop
from .models import TaskStatus

logger = logging.getLogger("taskflow.events")

MAX_PROGRESS_MESSAGE = 500  # the cap TaskContext.progress() applies to local events
MAX_REMOTE_PAYLOAD = 16 * 1024  # a valid event is well under 1 KB; bigger ones are not parsed
STATUSES = frozenset(status.value for status in TaskStatus)


class MalformedEvent(ValueError):
    """An event from Redis that is not a valid TaskEvent (the message says what is wrong)."""


@dataclass(frozen=True, slots=True)
class TaskEvent:
    task_id: str
    name: str
    status: str
    progress_done: float | None = None
    progress_total: float | None = None
    progress_message: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> TaskEvent:
        """Parse and validate an event; raises MalformedEvent saying what is wrong."""
        try:
            data = json.loads(text)
        except (ValueError, TypeError) as error:
            raise MalformedEvent(f"not JSON ({error})") from None
        if not isinstance(data, dict):
            raise MalformedEvent(f"not a JSON object but {type(data).__name__}")
        return cls(
            task_id=_text(data, "task_id", 36, required=True),
            name=_text(data, "name", 200, required=True),
            status=_status(data.get("status")),
            progress_done=_number(data, "progress_done"),
            progress_total=_number(data, "progress_total"),
            # Capped like a local progress message, not refused: the rest of the event is good.
            progress_message=_text(data, "progress_message", None, required=False, cap=MAX_PROGRESS_MESSAGE),
        )


def _text(data: dict[str, Any], key: str, limit: int | None, *, required: bool, cap: int | None = None) -> Any:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise MalformedEvent(f"{key} must be a non-empty string" if required else f"{key} must be a string")
    if limit is not None and len(value) > limit:
        raise MalformedEvent(f"{key} is longer than {limit} characters")
    if "\x00" in value:
        raise MalformedEvent(f"{key} contains a NUL character")
    return value[:cap] if cap is not None else value


def _status(value: Any) -> str:
    if value not in STATUSES:
        raise MalformedEvent(f"status must be one of {', '.join(sorted(STATUSES))}")
    return str(value)


def _number(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MalformedEvent(f"{key} must be a finite number")
    return float(value)


class EventBus:
    """Fan-out of TaskEvents to subscribers on one event loop; publish() is thread-safe."""

    def __init__(self, *, queue_size: int = 1024) -> None:
        self._queue_size = queue_size
        # Each subscriber's queue and how many events it dropped because it was full.
        self._subscribers: dict[asyncio.Queue[TaskEvent], int] = {}
        self.dropped_total = 0
        # Events from Redis that were malformed and dropped (see RedisBridge).
        self.rejected_total = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._redis: RedisBridge | None = None
        # Watchers of one task each (see watch): found by task id, not handed every event.
        self._watches: dict[str, set[TaskWatch]] = {}

    def bind(self, loop: asyncio.AbstractEventLoop, redis: RedisBridge | None = None) -> None:
        self._loop = loop
        self._redis = redis

    def unbind(self) -> None:
        self._loop = None
        self._redis = None

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def dropped(self, queue: asyncio.Queue[TaskEvent]) -> int:
        """Events this subscriber's queue dropped so far (it was full)."""
        return self._subscribers.get(queue, 0)

    @property
    def listening(self) -> bool:
        """False when nobody would receive an event: publishers may skip building one."""
        return bool(self._subscribers) or bool(self._watches) or self._redis is not None

    def publish(self, event: TaskEvent) -> None:
        call_in_loop(self._loop, self._publish_local, event, True)

    def deliver_remote(self, event: TaskEvent) -> None:
        """An event that came from another instance through Redis."""
        self._publish_local(event, forward=False)

    def _publish_local(self, event: TaskEvent, forward: bool) -> None:
        if self._watches:
            for watch in self._watches.get(event.task_id, ()):
                watch.saw(event)
        if not self._subscribers and (not forward or self._redis is None):
            return
        for queue in self._subscribers:
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self._subscribers[queue] += 1
                self.dropped_total += 1
        if forward and self._redis is not None:
            self._redis.send(event)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[TaskEvent]]:
        queue: asyncio.Queue[TaskEvent] = asyncio.Queue(self._queue_size)
        self._subscribers[queue] = 0
        try:
            yield queue
        finally:
            self._subscribers.pop(queue, None)

    @contextlib.contextmanager
    def watch(self, task_id: str) -> Iterator[TaskWatch]:
        """Follow one task's events (this instance's, and other instances' through Redis)."""
        watch = TaskWatch()
        self._watches.setdefault(task_id, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(task_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[task_id]


class TaskWatch:
    """The latest event of one task, and a flag set when one arrives (nothing queues up)."""

    def __init__(self) -> None:
        self.latest: TaskEvent | None = None
        self.changed = asyncio.Event()

    def saw(self, event: TaskEvent) -> None:
        self.latest = event
        self.changed.set()


class RedisBridge:
    """Carries events between instances over one Redis pub/sub channel."""

    def __init__(self, url: str, *, channel: str, origin: str, bus: EventBus) -> None:
        import redis.asyncio as aioredis

        self._client = aioredis.Redis.from_url(url, socket_connect_timeout=5)
        self.url = url.split("@")[-1]  # for messages: never the password
        self._channel = channel
        self._origin = origin
        self._bus = bus
        self._outbox: asyncio.Queue[str] = asyncio.Queue(10_000)
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        # Subscribe before returning, so no event published after start() is missed.
        pubsub = self._client.pubsub()
        await pubsub.subscribe(self._channel)
        for coro in (self._listen(pubsub), self._send_loop()):
            task = asyncio.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._client.aclose()

    def send(self, event: TaskEvent) -> None:
        payload = json.dumps({"origin": self._origin, "event": event.to_json()})
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(payload)

    async def _send_loop(self) -> None:
        while True:
            payload = await self._outbox.get()
            try:
                await self._client.publish(self._channel, payload)
            except Exception:
                logger.warning("taskflow: could not publish a task event to Redis", exc_info=True)
                await asyncio.sleep(1.0)

    def _parse(self, payload: Any) -> TaskEvent | None:
        """The event another instance sent, or None (ours, or malformed: then dropped, counted, logged)."""
        try:
            if not isinstance(payload, bytes | str):
                raise MalformedEvent(f"payload is {type(payload).__name__}, not text")
            if len(payload) > MAX_REMOTE_PAYLOAD:
                raise MalformedEvent(f"payload is larger than {MAX_REMOTE_PAYLOAD} bytes")
            try:
                envelope = json.loads(payload)
            except (ValueError, TypeError) as error:
                raise MalformedEvent(f"not JSON ({error})") from None
            if not isinstance(envelope, dict) or not isinstance(envelope.get("event"), str):
                raise MalformedEvent('not an {"origin": ..., "event": "..."} envelope')
            if envelope.get("origin") == self._origin:
                return None
            return TaskEvent.from_json(envelope["event"])
        except MalformedEvent as error:
            self._bus.rejected_total += 1
            logger.warning("taskflow: dropped a malformed task event from Redis channel %s: %s", self._channel, error)
            return None

    async def _listen(self, pubsub: Any) -> None:
        while True:
            try:
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    event = self._parse(message.get("data"))
                    if event is not None:
                        self._bus.deliver_remote(event)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                raise
            except Exception:
                logger.warning("taskflow: Redis event listener lost its connection; reconnecting", exc_info=True)
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                pubsub = self._client.pubsub()
                with contextlib.suppress(Exception):
                    await pubsub.subscribe(self._channel)
