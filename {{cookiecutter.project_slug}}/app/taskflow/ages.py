"""Ages written by people: "90" (seconds), "30m", "12h", "7d", "2w". The command line's
`purge --older-than` and the admin's purge read them the same way."""

from __future__ import annotations

import re
from datetime import timedelta

AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Past this, "now minus the age" leaves the calendar; no task is that old anyway.
MAX_AGE = timedelta(days=100 * 365)
AGE_HINT = "a positive age like 90 (seconds), 30m, 12h, 7d or 2w"


def parse_age(value: str | float) -> timedelta:
    """The age `value` stands for; a number is seconds. Raises ValueError saying what is wrong."""
    text = str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
    match = AGE.match(text) if isinstance(text, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"must be {AGE_HINT}, got {value!r}")
    seconds = float(match.group(1)) * UNIT_SECONDS[match.group(2)]
    if seconds > MAX_AGE.total_seconds():
        raise ValueError(f"must be at most {MAX_AGE.days} days, got {value!r}")
    return timedelta(seconds=seconds)
