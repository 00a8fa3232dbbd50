"""Rate limits: `@task_manager.task(rate_limit="10/minute")`, at most 10 starts in any minute.

A rate is counted over a sliding window: a start is allowed at time t when fewer than `limit`
starts of that task happened in the window before t. So no stretch of `period` seconds, wherever
it begins, ever holds more than `limit` starts (a fixed window or a token bucket lets up to twice
the limit through across a window's edge). A start is counted at the claim that moves a pending
row into RUNNING; the task's code begins a moment later (the claim commits, a worker takes the
row), so each start stays in its window DISPATCH_MARGIN longer than the period: code that begins
up to that much after its claim still never puts one start too many into any period.

Like a concurrency limit, a rate-limited task is only ever started by the claim of ownerless
rows (store/limits.py), which asks the task's window for room under the task's lock. The
windows live in the task database (store/rates.py) or, when a Redis URL is configured, in Redis
(RedisRateWindows below): both behind RateWindows, so the claim does not care which.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

logger = logging.getLogger("taskflow")

# Every spelling of a unit a rate may be given in, and its length in seconds.
UNITS = {
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hour", "hours"), 3600.0),
    **dict.fromkeys(("d", "day", "days"), 86400.0),
}
# "10/minute", "10/min", "20 / second", "100/5 minutes", "1/2h"
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")
# Milliseconds usually; a tenth of a second covers a loaded machine, at the cost of a limit
# of "20/second" running at 20 per 1.1 s (negligible for a limit per minute or longer).
DISPATCH_MARGIN = timedelta(milliseconds=100)
EXAMPLE = '@task_manager.task(rate_limit="10/minute") or rate_limit="100/5 seconds"'


@dataclass(frozen=True)
class Rate:
    """At most `limit` starts in any window of `period` seconds; `text` as the task declared it."""

    limit: int
    period: float
    text: str

    @property
    def window(self) -> timedelta:
        """How long a start counts: the period, plus the dispatch margin (see the module docstring)."""
        return timedelta(seconds=self.period) + DISPATCH_MARGIN


def parse_rate(text: object, *, task: str | None = None) -> Rate:
    """The Rate `text` declares ("N/unit" or "N/k units"); else a ValueError naming the task and
    what is accepted."""
    where = f" of task {task!r}" if task else ""
    match = _RATE.match(text.lower()) if isinstance(text, str) else None
    if not isinstance(text, str) or match is None or match.group(3) not in UNITS:
        raise ValueError(
            f"rate_limit{where} must be text like 'N/second', 'N/minute', 'N/hour', 'N/day' or "
            f"'N/k seconds', got {text!r}; e.g. {EXAMPLE}"
        )
    limit, every = int(match.group(1)), float(match.group(2) or 1)
    if limit < 1 or every <= 0:
        raise ValueError(
            f"rate_limit{where} needs at least 1 start in a period longer than 0, got {text!r}; e.g. {EXAMPLE}"
        )
    return Rate(limit=limit, period=every * UNITS[match.group(3)], text=text.strip())


@dataclass(frozen=True)
class Taken:
    """What a rate window granted: the first `granted` of the rows asked for may start now; when it
    granted fewer, `frees_at` is when it next has room (its oldest start leaves the window)."""

    granted: int
    frees_at: datetime | None = None


@dataclass(frozen=True)
class Usage:
    """Starts in a task's current window, and when the next one is allowed if it is full."""

    started: int
    frees_at: datetime | None


class RateWindows(Protocol):
    """Where the starts of rate-limited tasks are counted: in the task database or in Redis.

    `take` runs inside the claim's transaction, after the task's lock (store/limits.py), so the
    count and the new starts are one step for every instance; `connection` is that transaction.
    """

    def take(self, connection: Any, *, name: str, rate: Rate, wanted: int, now: datetime) -> Taken: ...

    def usage(self, connection: Any, *, name: str, rate: Rate, now: datetime) -> Usage: ...


# Trims the window, counts it, and adds up to ARGV[4] starts at ARGV[1] in one atomic step, so
# instances sharing Redis never grant the same room twice. Scores are epoch microseconds; each
# start is its own member (ARGV[5] is unique per call). Returns {granted, oldest score left}.
_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local free = tonumber(ARGV[3]) - redis.call('ZCARD', KEYS[1])
local granted = math.max(0, math.min(free, tonumber(ARGV[4])))
for i = 1, granted do
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[5] .. ':' .. i)
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {granted, oldest[2] or false}
"""


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _moment(micros: Any, like: datetime) -> datetime:
    return datetime.fromtimestamp(int(float(micros)) / 1_000_000, tz=like.tzinfo)


class RedisRateWindows:
    """Rate windows in Redis: one sorted set of start times per task, `<prefix>rate:<name>`.

    If Redis cannot be reached the task's rows are granted nothing and stay pending (logged, and
    tried again shortly): a rate limit is never exceeded for want of its counter.
    """

    RETRY_AFTER_ERROR = timedelta(seconds=1)

    def __init__(self, url: str, *, prefix: str) -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        self._take = self._client.register_script(_TAKE)
        self._prefix = prefix
        self.url = url.split("@")[-1]  # for messages: never the password

    def key(self, name: str) -> str:
        return f"{self._prefix}rate:{name}"

    def take(self, connection: Any, *, name: str, rate: Rate, wanted: int, now: datetime) -> Taken:
        ttl_ms = int(rate.period * 1000) + 1000
        arguments: list[int | str] = [
            _micros(now),
            _micros(now - rate.window),
            rate.limit,
            wanted,
            uuid.uuid4().hex,
            ttl_ms,
        ]
        try:
            granted, oldest = self._take(keys=[self.key(name)], args=arguments)
        except Exception as exc:
            logger.error(
                "taskflow: cannot reach Redis at %s to count the starts of rate-limited task %r (%s); "
                "its tasks stay pending until Redis answers",
                self.url,
                name,
                exc,
            )
            return Taken(granted=0, frees_at=now + self.RETRY_AFTER_ERROR)
        granted = int(granted)
        frees_at = _moment(oldest, now) + rate.window if granted < wanted and oldest else None
        return Taken(granted=granted, frees_at=frees_at)

    def usage(self, connection: Any, *, name: str, rate: Rate, now: datetime) -> Usage:
        scores = self._client.zrangebyscore(self.key(name), f"({_micros(now - rate.window)}", "+inf", withscores=True)
        started = len(scores)
        frees_at = _moment(scores[0][1], now) + rate.window if started >= rate.limit else None
        return Usage(started=started, frees_at=frees_at)

    def close(self) -> None:
        self._client.close()
