"""Query-string filters shared by the JSON list, the bulk retry and the dashboard."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

from fastapi import HTTPException, Query

from ..models import TaskStatus
from ..options import PRIORITY_MAX, PRIORITY_MIN
from ..store import TaskFilter

MAX_TEXT = 200


def as_utc(value: datetime | None) -> datetime | None:
    """Query times as aware UTC, like the stored ones (a naive time is taken as UTC).

    Raises ValueError for a time that has no UTC equivalent (year 1 east of UTC, year 9999 west).
    """
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is out of range once converted to UTC") from None


def _query_time(name: str, value: datetime | None) -> datetime | None:
    try:
        return as_utc(value)
    except ValueError as error:
        raise HTTPException(
            status_code=422, detail=f"{name}: {error}; use a time between years 1 and 9999 in UTC"
        ) from None


def api_filter(
    status: Annotated[
        TaskStatus | None, Query(description="pending, running, success, failed, cancelled, interrupted")
    ] = None,
    name: Annotated[str | None, Query(max_length=MAX_TEXT, description="exact task name")] = None,
    since: Annotated[datetime | None, Query(description="created at or after (ISO 8601; naive is UTC)")] = None,
    until: Annotated[datetime | None, Query(description="created before (ISO 8601; naive is UTC)")] = None,
    q: Annotated[str | None, Query(max_length=MAX_TEXT, description="text in the id, name or error")] = None,
    min_priority: Annotated[
        int | None, Query(ge=PRIORITY_MIN, le=PRIORITY_MAX, description="priority at or above this")
    ] = None,
) -> TaskFilter:
    """Dependency for the JSON API: FastAPI answers 422 with a message for a bad value."""
    return TaskFilter(
        status=status,
        name=name or None,
        since=_query_time("since", since),
        until=_query_time("until", until),
        text=q or None,
        min_priority=min_priority,
    )


def parse_min_priority(text: str) -> tuple[int | None, str | None]:
    """The form's minimum priority (empty: any) and the message for a bad one."""
    if not text:
        return None, None
    try:
        value = int(text)
    except ValueError:
        return None, f"minimum priority must be a whole number, got {text[:40]!r}"
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        return None, f"minimum priority must be from {PRIORITY_MIN} to {PRIORITY_MAX}, got {value}"
    return value, None


@dataclass
class FilterForm:
    """The dashboard's filter form: empty fields mean "any", bad values become messages (shown, not 500)."""

    values: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    task_filter: TaskFilter = field(default_factory=TaskFilter)

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> FilterForm:
        keys = ("status", "name", "since", "until", "q", "min_priority")
        values = {key: (params.get(key) or "").strip() for key in keys}
        errors: list[str] = []
        # The middleware stops NUL in URLs and plain form bodies; this covers multipart ones too
        # (PostgreSQL cannot compare a string holding NUL).
        for key, value in values.items():
            if "\x00" in value:
                errors.append(f"{key} contains a NUL character; remove it")
                values[key] = value.replace("\x00", "")
        status = None
        if values["status"]:
            try:
                status = TaskStatus(values["status"])
            except ValueError:
                errors.append(f"unknown status {values['status']!r}")
        times: dict[str, datetime | None] = {}
        for key in ("since", "until"):
            times[key] = None
            if values[key]:
                try:
                    parsed = datetime.fromisoformat(values[key])
                except ValueError:
                    errors.append(f"{key} must be a date and time like 2025-01-31T13:45, got {values[key][:40]!r}")
                    continue
                try:
                    times[key] = as_utc(parsed)
                except ValueError as error:
                    errors.append(f"{key}: {error}; use a time between years 1 and 9999 in UTC")
        for key in ("name", "q"):
            if len(values[key]) > MAX_TEXT:
                errors.append(f"{key} is longer than {MAX_TEXT} characters")
                values[key] = values[key][:MAX_TEXT]
        min_priority, priority_error = parse_min_priority(values["min_priority"])
        if priority_error:
            errors.append(priority_error)
        task_filter = TaskFilter(
            status=status,
            name=values["name"] or None,
            since=times["since"],
            until=times["until"],
            text=values["q"] or None,
            min_priority=min_priority,
        )
        return cls(values=values, errors=errors, task_filter=task_filter)

    def query(self) -> dict[str, str]:
        """The non-empty values, for links (pagination, the event stream)."""
        return {key: value for key, value in self.values.items() if value}
