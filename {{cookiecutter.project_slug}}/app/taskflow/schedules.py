"""Periodic schedules: what @task_manager.schedule declares, and the loop that fires due times.

A schedule is an ordinary task (retries, timeout, progress, logs) plus a row in
taskflow_schedules holding its next due time. Every instance with schedules runs a Scheduler;
each finds the due schedules and fires them through Store.fire_schedule, whose compare-and-set
lets exactly one instance move a schedule past a due time and insert that due time's task row
(ownerless and persisted, with an id made from the schedule and the due time). The row then
starts the way every ownerless row does: the next control-loop tick of any instance claims it
(LeaseKeeper.claim_released). A process killed before that commit leaves no trace, so another
instance fires the due time; killed after it, the row is there and another instance runs it.

After downtime a schedule is behind by one or more due times. Only the latest of them runs, so
missed ticks never pile up; with catch_up=False even that one is skipped when it is more than
MISSED_AFTER seconds old, and the schedule simply waits for its next due time.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ._loops import finished_in_thread
from .models import new_task_row, utcnow

if TYPE_CHECKING:
    from .manager import TaskManager
    from .store import Store

logger = logging.getLogger("taskflow.schedules")

# The scheduler sleeps until the earliest due time, but never longer than this, so a schedule
# another instance resumed or changed is seen soon.
MAX_SLEEP = 1.0
# A due time found more than this many seconds late was missed (the service was down): with
# catch_up=False it is skipped.
MISSED_AFTER = 60.0
# Names the run of one schedule at one due time: the same on every instance.
_RUN_NAMESPACE = uuid.UUID("6f1c7f57-3c55-4f0e-9a52-5c1d2a0e7b31")
CRON_MAX_LENGTH = 200  # TaskSchedule.expression's column
CRON_EXAMPLE = '"*/5 * * * *" (every five minutes) or "0 3 * * mon" (Mondays at 03:00)'


class ScheduleNotFound(LookupError):
    """No schedule of that name is stored (pause/resume)."""


@dataclass(frozen=True, kw_only=True)
class ScheduleSpec:
    """One schedule: its kind ("every" seconds or "cron"), its expression and time zone."""

    name: str
    kind: str
    expression: str
    timezone: str
    catch_up: bool = True

    @property
    def every(self) -> float | None:
        return float(self.expression) if self.kind == "every" else None

    def next_after(self, moment: datetime) -> datetime:
        """The first due time strictly after `moment` (aware UTC in, aware UTC out)."""
        every = self.every
        if every is not None:
            return moment + timedelta(seconds=every)
        zone = ZoneInfo(self.timezone)
        # cronsim counts in whole seconds: start from the second that holds `moment`.
        local = moment.astimezone(zone).replace(microsecond=0)
        return next(CronSim(self.expression, local)).astimezone(moment.tzinfo)

    def latest_due(self, due_at: datetime, now: datetime) -> datetime:
        """The latest due time at or before `now`, counting from the stored due time `due_at`."""
        every = self.every
        if every is not None:
            return due_at + timedelta(seconds=every * math.floor((now - due_at).total_seconds() / every))
        latest = due_at
        while (following := self.next_after(latest)) <= now:
            latest = following
        return latest

    def describe(self) -> str:
        return f"every {self.expression}s" if self.kind == "every" else f"cron {self.expression!r} ({self.timezone})"


def build_schedule(
    function: Callable[..., Any],
    *,
    name: str | None,
    every: float | timedelta | None,
    cron: str | None,
    timezone: str,
    catch_up: bool,
) -> ScheduleSpec:
    """The schedule of `function`; every mistake fails here, at decoration time, with a clear message."""
    schedule_name = name if name is not None else getattr(function, "__name__", None) or type(function).__name__
    where = f"schedule {schedule_name!r}"
    if (every is None) == (cron is None):
        raise ValueError(f"{where}: give exactly one of every=<seconds or timedelta> or cron=<cron text>")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(
            f"{where}: unknown timezone {timezone!r}; use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from None
    _check_takes_no_arguments(function, where)
    if every is not None:
        seconds = every.total_seconds() if isinstance(every, timedelta) else every
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds < math.inf:
            raise ValueError(f"{where}: every must be a positive number of seconds or a timedelta, got {every!r}")
        written = repr(float(seconds))  # exact: "3600.0" is stored as "3600", "0.25" as "0.25"
        expression = written.removesuffix(".0")
        return ScheduleSpec(
            name=schedule_name, kind="every", expression=expression, timezone=timezone, catch_up=catch_up
        )
    assert cron is not None
    text = " ".join(str(cron).split())
    if len(text) > CRON_MAX_LENGTH:
        raise ValueError(f"{where}: cron text is {len(text)} characters long; at most {CRON_MAX_LENGTH} are stored")
    try:
        CronSim(text, utcnow().astimezone(ZoneInfo(timezone)))
    except (CronSimError, ValueError, TypeError) as error:
        raise ValueError(f"{where}: bad cron text {cron!r} ({error}); write e.g. {CRON_EXAMPLE}") from None
    return ScheduleSpec(name=schedule_name, kind="cron", expression=text, timezone=timezone, catch_up=catch_up)


def _check_takes_no_arguments(function: Callable[..., Any], where: str) -> None:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return
    required = [
        parameter.name
        for parameter in parameters
        if parameter.default is parameter.empty
        and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    ]
    if required:
        raise TypeError(
            f"{where}: a scheduled function is called with no arguments, but it requires {', '.join(required)}; "
            "give them defaults"
        )


def run_id(name: str, due_at: datetime) -> str:
    """The task id of schedule `name`'s run at `due_at`: every instance makes the same one."""
    return str(uuid.uuid5(_RUN_NAMESPACE, f"{name}@{due_at.isoformat()}"))


def run_row(manager: TaskManager, schedule: ScheduleSpec, due_at: datetime) -> dict[str, Any]:
    """The task row of one due time: ownerless and persisted, so whichever instance claims
    released rows first runs it, and a crash during the run hands it to another instance."""
    spec = manager.registry.get(schedule.name)
    assert spec is not None  # registered together with the schedule
    return new_task_row(
        id=run_id(schedule.name, due_at),
        name=spec.name,
        persist=True,
        max_attempts=spec.policy.retries + 1,
        idempotency_key=f"schedule:{schedule.name}@{due_at.isoformat()}",
        priority=spec.options.priority,
    )


def stored_spec(row: Any) -> ScheduleSpec:
    """A schedule as stored (for one this process may not register)."""
    return ScheduleSpec(name=row.name, kind=row.kind, expression=row.expression, timezone=row.timezone)


def set_paused(store: Store, name: str, *, paused: bool, actor: str) -> None:
    """Pause or resume schedule `name`, audited. A resume starts from the next due time after
    now: due times that passed while it was paused do not run."""
    row = store.get_schedule(name)
    if row is None:
        raise ScheduleNotFound(f"no schedule named {name!r}")
    next_run_at = stored_spec(row).next_after(utcnow()) if row.paused and not paused else None
    store.set_schedule_paused(name, paused=paused, next_run_at=next_run_at)
    action = "pause-schedule" if paused else "resume-schedule"
    store.add_audit(actor=actor, action=action, task_id=None, detail=json.dumps({"schedule": name}))


class Scheduler:
    """Fires this service's due schedules; started by the runtime only when schedules exist."""

    def __init__(self, manager: TaskManager) -> None:
        self._manager = manager
        self._store = manager.store
        self._schedules = dict(manager.schedules)
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    async def start(self) -> None:
        await finished_in_thread(self.register)
        self._task = asyncio.create_task(self._loop(), name="taskflow-schedules")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def register(self) -> None:
        """Store each schedule's definition; an unchanged one keeps its next due time."""
        now = utcnow()
        for schedule in self._schedules.values():
            self._store.register_schedule(
                schedule.name,
                kind=schedule.kind,
                expression=schedule.expression,
                timezone=schedule.timezone,
                first_run_at=schedule.next_after(now),
            )

    async def _loop(self) -> None:
        while True:
            try:
                wait = await finished_in_thread(self.fire_due)
                if self._failing:
                    self._failing = False
                    logger.warning("taskflow: schedules fire again")
            except asyncio.CancelledError:
                raise
            except Exception as error:
                wait = MAX_SLEEP
                if not self._failing:  # once per outage, not on every retry
                    self._failing = True
                    logger.error("taskflow: cannot fire schedules (database unreachable?); retrying: %s", error)
            await asyncio.sleep(wait)

    def fire_due(self) -> float:
        """Fire every due schedule of ours; returns the seconds until the next one (bounded)."""
        now = utcnow()
        wait = MAX_SLEEP
        for row in self._store.list_schedules():
            schedule = self._schedules.get(row.name)
            if schedule is None or row.paused:
                continue
            if row.next_run_at <= now:
                self.fire(schedule, row.next_run_at, now)
                wait = 0.0  # look again at once: the schedule has moved on (by us or another instance)
            else:
                wait = min(wait, (row.next_run_at - now).total_seconds())
        return max(wait, 0.0)

    def fire(self, schedule: ScheduleSpec, due_at: datetime, now: datetime) -> bool:
        """Fire `schedule`, stored as due at `due_at`; True if this instance won that due time."""
        latest = schedule.latest_due(due_at, now)
        runs = schedule.catch_up or (now - latest).total_seconds() <= MISSED_AFTER
        row = run_row(self._manager, schedule, latest) if runs else None
        won = self._store.fire_schedule(
            schedule.name, due_at=due_at, next_run_at=schedule.next_after(latest), run_at=latest, row=row
        )
        if won and latest != due_at:
            logger.warning(
                "taskflow: schedule %r missed due times from %s to %s; %s",
                schedule.name,
                due_at.isoformat(),
                latest.isoformat(),
                "the latest runs once" if runs else "skipped (catch_up=False)",
            )
        if won and row is not None:
            self._manager.scheduled(row)
        return won
