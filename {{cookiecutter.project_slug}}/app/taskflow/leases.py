"""Heartbeat and recovery: keep this instance's leases alive, take over those of dead ones.

One control loop per instance: every tick it hands over jobs whose request never did, picks
up cancel requests made on other instances and claims rows nobody owns (released by an instance
at its shutdown, or committed by an enqueue-only process: a probe of a small index; a write only
when there is something to take, in batches as fast as they run while a backlog waits); every
lease/3 it renews all its leases in one statement; at start and every lease/2 (jittered) it
recovers other owners' expired work and hands back rows it owns but no longer runs. Recovery
only puts rows back to PENDING under our name; the runner's claim takes them into RUNNING. (Rows
nobody owns go into RUNNING with the batch that claims them: each then starts without a claim.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

from ._loops import finished_in_thread
from .models import TaskStatus, utcnow
from .rates import RateWindows
from .store import Store, TaskLimits

logger = logging.getLogger("taskflow.leases")

RECOVERY_BATCH = 1000

# Ownerless rows (enqueued with no manager running, by an enqueue-only process, or released at a
# shutdown) are claimed in batches sized to the room this instance has (Runner.room): enough for
# its free workers or, while its tasks are typically short, up to CLAIM_DEPTH times its workers
# queued here. Deep enough that a backlog of short tasks never waits for the next batch (a claim
# is one transaction of several milliseconds), shallow enough that instances split a backlog.
CLAIM_DEPTH = 16


def process_scope() -> str:
    """Where a pid means one process: this host's name plus its pid namespace, when known.

    Containers often share a host name (`network_mode: host`, a fixed `hostname:`) while each
    has its own pid namespace: by host name alone, one container would find the other's pids
    "gone" and take over tasks that are still running there.
    """
    host = socket.gethostname()
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:  # not Linux, or /proc not mounted: the host name is all we know
        return host
    return f"{host}/{namespace}"


def new_owner_id() -> str:
    """scope:pid:random — scope and pid let a restarted process spot a dead neighbour at once."""
    return f"{process_scope()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: dead for our purpose
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def dead_local_owners(owners: list[str], *, me: str) -> list[str]:
    """Owners in this process scope whose process is gone (their leases need not be waited out)."""
    scope = process_scope()
    dead = []
    for owner in owners:
        parts = owner.rsplit(":", 2)
        if owner == me or len(parts) != 3 or parts[0] != scope or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid != os.getpid() and not _pid_alive(pid):
            dead.append(owner)
    return dead


class LeaseKeeper:
    def __init__(
        self,
        *,
        store: Store,
        owner: str,
        lease_seconds: float,
        max_recoveries: int,
        poll_interval: float,
        on_recovered: Callable[[list[Any]], None],
        on_claimed: Callable[[list[Any]], None],
        on_tick: Callable[[], Awaitable[None]],
        holds: Callable[[str], bool] | None = None,
        runnable: Callable[[], Collection[str]] | None = None,
        room: Callable[[], int] | None = None,
        wait_for_room: Callable[[], Awaitable[None]] | None = None,
        limits: Callable[[], Mapping[str, TaskLimits]] | None = None,
        wait_for_finish: Callable[[], Awaitable[None]] | None = None,
        settle: Callable[[], Awaitable[None]] | None = None,
        before_claim_with_limits: Callable[[], None] | None = None,
        rates: RateWindows | None = None,
    ) -> None:
        self._store = store
        self._owner = owner
        self._lease = timedelta(seconds=lease_seconds)
        self._max_recoveries = max_recoveries
        self._poll = poll_interval
        # Rows taken back to PENDING for us (recover), and rows claimed into RUNNING (claim_released).
        self._on_recovered = on_recovered
        self._on_claimed = on_claimed
        self._on_tick = on_tick
        # Whether this instance still has a job for a task (queued, waiting or running). Rows we
        # own without a job (lost after an ambiguous write) are handed to recovery; None: no check.
        self._holds = holds
        self._suspects: set[str] = set()
        # Names of the tasks this instance can run; recovery leaves other tasks to other instances.
        self._runnable = runnable
        # How many more tasks this instance takes now (None: a recovery batch), and a wait until
        # it has room again: a backlog of ownerless rows is claimed as fast as they run.
        self._room = room
        self._wait_for_room = wait_for_room
        self._more_released = False  # the last claim was full: more ownerless rows may wait
        # The registered tasks with a concurrency limit (only claim_ownerless starts them), and a
        # wait until a task finishes here: a slot may have freed, so their claim is tried again
        # then, not only every poll (nor in a busy loop).
        self._limits = limits
        self._wait_for_finish = wait_for_finish
        # Writes the outcomes of tasks that ended here: a limited task's slot frees when its
        # outcome is in the database, so a claim with limits first has them written.
        self._settle = settle
        # Called as each claim with limits begins: wait_for_finish waits for a task that ends after
        # it, so one that ends during the claim (its slot counted taken) still wakes the loop.
        self._before_claim_with_limits = before_claim_with_limits
        # Where rate limits count starts (None: the task database), and when the earliest rate
        # window that held rows back has room again: the loop claims again then, not before.
        self._rates = rates
        self._rate_retry_at: datetime | None = None
        self._claim_now = asyncio.Event()
        self._loop_of_claims: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._recover_now = asyncio.Event()
        self._outage = _Outage()

    def lease_until(self, now: datetime | None = None) -> datetime:
        return (now or utcnow()) + self._lease

    async def start(self) -> None:
        self._loop_of_claims = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._loop(), name="taskflow-leases")

    async def stop(self) -> None:
        self._stopped.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def recover_soon(self) -> None:
        self._recover_now.set()

    def claim_soon(self) -> None:
        """Claim ownerless rows now, not at the next poll (any thread): a task with a concurrency
        limit was enqueued here."""
        if self._loop_of_claims is not None:
            self._loop_of_claims.call_soon_threadsafe(self._claim_now.set)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        lease = self._lease.total_seconds()
        next_renew = loop.time() + lease / 3
        next_recovery = loop.time()  # at once: requeue what earlier runs left unfinished
        next_tick = loop.time()
        while not self._stopped.is_set():
            now = loop.time()
            try:
                # Renew before recovering: after an outage our own leases come back first.
                if now >= next_renew:
                    await finished_in_thread(self._renew)
                    next_renew = now + lease / 3
                if now >= next_recovery or self._recover_now.is_set():
                    self._recover_now.clear()
                    await self.recover()
                    await self._hand_back_lost()
                    next_recovery = now + lease / 2 * random.uniform(0.8, 1.2)
                await self.claim_released()
                # Once per poll, however fast a backlog makes this loop turn.
                if now >= next_tick:
                    await self._on_tick()
                    next_tick = now + self._poll
                self._outage.ended()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._outage.failed(exc)
            # While the database is away, back off (capped well inside the lease) instead of polling.
            wait = (
                min(self._poll * 2 ** min(self._outage.failures, 16), lease / 6)
                if self._outage.failures
                else self._poll
            )
            if self._rate_retry_at is not None and not self._outage.failures:
                wait = min(wait, max(0.0, (self._rate_retry_at - utcnow()).total_seconds()))
            backlog = self._more_released and not self._outage.failures
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    if backlog and self._wait_for_room is not None:
                        await self._wait_for_room()  # more wait ownerless: claim again once there is room
                    else:
                        await self._wake()

    async def _wake(self) -> None:
        """Until recovery is asked for, a limited task is enqueued here, or (with limited tasks
        registered) a task finishes here."""
        waits: list[Awaitable[Any]] = [self._recover_now.wait(), self._claim_now.wait()]
        if self._wait_for_finish is not None and self._limits is not None and self._limits():
            waits.append(self._wait_for_finish())
        pending = [asyncio.ensure_future(wait) for wait in waits]
        try:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in pending:
                waiting.cancel()

    def _renew(self) -> int:
        return self._store.renew_leases(self._owner, until=self.lease_until())

    async def recover(self) -> int:
        """Take over other owners' expired work until none is left; returns how many rows were taken."""
        recovered = quarantined = 0
        await finished_in_thread(self._expire_dead_neighbours)
        while True:
            rows = await finished_in_thread(self._take_batch)
            if rows:
                quarantined += sum(1 for row in rows if row.status != TaskStatus.PENDING.value)
                recovered += len(rows)
                self._on_recovered(rows)
            if len(rows) < RECOVERY_BATCH:
                break
        interrupted = await finished_in_thread(self._store.interrupt_orphans, self._owner)
        if recovered or interrupted:
            logger.warning(
                "taskflow: took over %d persisted task(s) no running instance held (%d of them quarantined after "
                "too many crashes) and marked %d unpersisted one(s) interrupted: their instance stopped or lost "
                "its lease",
                recovered,
                quarantined,
                interrupted,
            )
        return recovered

    async def claim_released(self) -> int:
        """Take rows no instance owns now, not at the next sweep: released by an instance that shut
        down, or enqueued where no task runs (an enqueue-only process, a script). In one batch,
        as many as this instance has room for; a full batch has the loop come back for more as
        soon as there is room again."""
        self._claim_now.clear()
        self._rate_retry_at = None
        names = self._runnable() if self._runnable is not None else None
        limits = self._limits() if self._limits is not None else None
        limit = RECOVERY_BATCH if self._room is None else min(self._room(), RECOVERY_BATCH)
        if (names is not None and not names) or limit <= 0:
            return 0
        if limits and self._before_claim_with_limits is not None:
            self._before_claim_with_limits()
        if limits and self._settle is not None:
            await self._settle()
        if not self._more_released:
            # A read first: an idle tick must not take SQLite's write lock.
            found = await finished_in_thread(lambda: self._store.released_ids(limit=1, names=names, due=utcnow()))
            if not found:
                return 0
        claim = await finished_in_thread(
            lambda: self._store.claim_ownerless(
                self._owner, until=self.lease_until(), limit=limit, names=names, limits=limits, rates=self._rates
            )
        )
        rows, self._rate_retry_at = claim.rows, claim.retry_at
        # A full batch: more rows may wait, so claim again once there is room. Otherwise the loop
        # waits (_wake), with limited tasks until one ends here (claiming again before that would
        # find the slots of the tasks just started still taken), or until a rate window that held
        # rows back has room (retry_at).
        self._more_released = len(rows) >= limit
        if rows:
            logger.debug("taskflow: claimed %d ownerless task(s)", len(rows))
            self._on_claimed(rows)
        return len(rows)

    def _expire_dead_neighbours(self) -> None:
        """Bring dead processes' intake rows into the task table, and end dead local owners'
        leases, so the take-over finds both."""
        self._store.adopt_orphans(stale_after=self._lease.total_seconds())
        live = self._store.live_owners()
        dead = dead_local_owners(live, me=self._owner)
        if dead:  # else no write transaction (a lock on SQLite) for nothing
            self._store.expire_owners(dead)

    def _take_batch(self) -> list[Any]:
        names = self._runnable() if self._runnable is not None else None
        if names is not None and not names:
            return []
        limited = sorted(self._limits()) if self._limits is not None else []
        if limited:
            # Back to ownerless, not to us: only the claim starts a limited task, within its limits.
            self._store.take_over_expired(
                self._owner,
                until=self.lease_until(),
                limit=RECOVERY_BATCH,
                max_recoveries=self._max_recoveries,
                names=limited,
                ownerless=True,
            )
            if names is not None:
                names = [name for name in names if name not in limited]
                if not names:
                    return []
        return self._store.take_over_expired(
            self._owner,
            until=self.lease_until(),
            limit=RECOVERY_BATCH,
            max_recoveries=self._max_recoveries,
            names=names,
        )

    async def _hand_back_lost(self) -> int:
        """Disown rows we hold without a job, so recovery re-runs them (persisted) or interrupts them.

        A job can be lost when a write's outcome was ambiguous (the connection dropped after the
        commit): the retried claim then matches nothing. Its row would stay RUNNING under our
        renewed lease forever. A row is only disowned when two checks a recovery period apart both
        find it unchanged and without a job here: a job between two hands (claim in flight) is not.
        """
        if self._holds is None:
            return 0
        before = utcnow() - self._lease
        owned = await finished_in_thread(lambda: self._store.owned_unchanged_since(self._owner, before=before))
        suspects = {task_id for task_id in owned if not self._holds(task_id)}
        lost, self._suspects = sorted(suspects & self._suspects), suspects
        if not lost:
            return 0
        disowned = await finished_in_thread(lambda: self._store.disown(self._owner, lost, before=before))
        if disowned:
            logger.error(
                "taskflow: %d task(s) owned here had no job (lost after an ambiguous database write); "
                "handing them to recovery: %s",
                disowned,
                ", ".join(lost[:5]) + (", ..." if len(lost) > 5 else ""),
            )
            self.recover_soon()
        return disowned

    def release(self) -> tuple[int, int]:
        return self._store.release_leases(self._owner)

    def cancel_requests(self) -> list[str]:
        return self._store.cancel_requests(self._owner)


class _Outage:
    """Log a database outage once when it starts and once when it ends, not on every retry."""

    def __init__(self) -> None:
        self.failures = 0
        self._since = 0.0

    def failed(self, exc: Exception) -> None:
        self.failures += 1
        if self.failures == 1:
            self._since = time.monotonic()
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            logger.error(
                "taskflow: lease upkeep failed (database unreachable or locked?); retrying with backoff: %s",
                first_line,
            )

    def ended(self) -> None:
        if self.failures:
            logger.warning(
                "taskflow: lease upkeep works again after %d failed tries over %.1fs",
                self.failures,
                time.monotonic() - self._since,
            )
            self.failures = 0
