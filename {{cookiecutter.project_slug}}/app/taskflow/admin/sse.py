"""The dashboard's event stream: small, coalesced row updates, never the whole state.

Every connection (and every reconnection of the browser's EventSource) starts with a snapshot
of the client's page, read after subscribing: whatever happened between the page's render and the
connection (a task created meanwhile, a row that finished while the network was down) is shown,
and the stream's idea of which rows the client holds is exactly what it was sent. After that,
task events are collected for WINDOW seconds after the first one arrives, then ONE server-sent
event carries the changed rows of the client's page (rendered `<tr>` fragments that htmx swaps
out of band by their stable id `task-<id>`). On the first page, when tasks enter or leave it, the
page's rows are sent as one `<tbody>` (bounded by the page size). A subscriber whose queue
overflowed gets a `resync` event and re-fetches its table instead. The stream ends when the task
manager shuts down (so uvicorn can stop) or the client goes away (FastAPI cancels it); FastAPI's
EventSourceResponse adds a keepalive comment every 15 s while it is idle.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from ..events import EventBus, TaskEvent
from ..store import TaskFilter
from .api import ServiceDep
from .auth import PrincipalDep, get_admin
from .filters import FilterForm
from .service import AdminService
from .views import PAGE_SIZE, page_offset
from .waiting import Waiting

WINDOW = 0.25  # seconds of events folded into one message: at most ~4 messages a second
RETRY_MS = 3000  # how long the browser waits before reconnecting
MAX_CARRY = 3  # windows a task whose row is not in the database yet is looked for again
FLUSH_WAIT = 0.5  # at most this long waiting for local writes before reading rows

router = APIRouter()

# Renders rows (whole first page or in place), with why each pending one waits (admin/waiting.py).
Render = Callable[[list[Any], bool, dict[str, Waiting]], str]


@dataclass(frozen=True)
class View:
    """What one client shows: its filter and page. Only the first page takes new rows live."""

    task_filter: TaskFilter
    offset: int = 0
    limit: int = PAGE_SIZE


def overlay(row: Any, event: TaskEvent | None) -> SimpleNamespace:
    """The stored row with the latest event's status and progress, which may be newer than the row
    (read like a row: `.status`, `.id`)."""
    values = dict(row._mapping)
    if event is not None:
        values["status"] = event.status
        if event.progress_done is not None or event.progress_total is not None:
            values.update(
                progress_done=event.progress_done,
                progress_total=event.progress_total,
                progress_message=event.progress_message,
            )
    return SimpleNamespace(**values)


class RowStream:
    def __init__(
        self,
        *,
        service: AdminService,
        bus: EventBus,
        stop: asyncio.Event,
        view: View,
        render: Render,
        window: float = WINDOW,
        flush: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._service = service
        self._bus = bus
        self._stop = stop
        self._view = view
        self._render = render
        self._window = window
        self._flush = flush
        self._known: list[str] = []
        self._carried: dict[str, tuple[TaskEvent, int]] = {}
        self._drops_seen = 0

    async def events(self) -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(comment="taskflow live rows", retry=RETRY_MS)
        async with self._bus.subscribe() as queue:
            stopping = asyncio.ensure_future(self._stop.wait())
            try:
                snapshot = await self._snapshot()
                if snapshot is not None:
                    yield snapshot
                while not self._stop.is_set():
                    collected = await self._collect(queue, stopping)
                    if collected is None:
                        break
                    message = await self._message(*collected)
                    if message is not None:
                        yield message
            finally:
                stopping.cancel()

    async def _collect(
        self, queue: asyncio.Queue[TaskEvent], stopping: asyncio.Future[Any]
    ) -> tuple[dict[str, TaskEvent], bool] | None:
        """Wait for a first event (or shutdown), let the window fill, then take everything queued.

        Returns (latest event per task, whether the queue dropped events since the last window).
        """
        getting = asyncio.ensure_future(queue.get())
        # Tasks carried from the last window are looked up again after one window, events or not.
        timeout = self._window if self._carried else None
        await asyncio.wait({getting, stopping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        changed: dict[str, TaskEvent] = {}
        if getting.done():
            event = getting.result()
            changed[event.task_id] = event
        else:
            getting.cancel()
        if self._stop.is_set():
            return None
        await asyncio.wait({stopping}, timeout=self._window)  # the coalescing window, cut short by shutdown
        if self._stop.is_set():
            return None
        while not queue.empty():
            event = queue.get_nowait()
            changed[event.task_id] = event  # the latest event of a task wins
        # Drops after this point are seen at the next window.
        dropped = self._bus.dropped(queue)
        overflowed, self._drops_seen = dropped > self._drops_seen, dropped
        return changed, overflowed

    async def _snapshot(self) -> ServerSentEvent | None:
        """The client's page as it is now: the first page whole, a later page's own rows in place."""
        await self._flushed()
        page = await self._page_rows()
        self._known = [row.id for row in page]
        rows = [overlay(row, None) for row in page]
        first_page = self._view.offset == 0
        if not rows and not first_page:
            return None  # a later page with no rows: nothing to update in place
        return ServerSentEvent(event="rows", raw_data=await self._rendered(rows, first_page))

    async def _flushed(self) -> None:
        """Let this instance's queued writes land first (bounded: a slow database delays, never blocks)."""
        if self._flush is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush(), FLUSH_WAIT)

    async def _message(self, changed: dict[str, TaskEvent], overflowed: bool) -> ServerSentEvent | None:
        if overflowed:
            # Events were dropped: rows may be stale; the client reloads its table once.
            self._carried.clear()
            self._known = [row.id for row in await self._page_rows()]
            return ServerSentEvent(event="resync", data="resync")
        for task_id, (event, _) in self._carried.items():
            changed.setdefault(task_id, event)
        await self._flushed()
        if self._view.offset == 0:
            html = await self._first_page(changed)
        else:
            html = await self._in_place(changed)
        return ServerSentEvent(event="rows", raw_data=html) if html else None

    async def _first_page(self, changed: dict[str, TaskEvent]) -> str:
        page = await self._page_rows()
        ids = [row.id for row in page]
        await self._carry_missing(changed, set(ids))
        if ids != self._known:
            self._known = ids
            return await self._rendered([overlay(row, changed.get(row.id)) for row in page], True)
        rows = [overlay(row, changed[row.id]) for row in page if row.id in changed]
        return await self._rendered(rows, False) if rows else ""

    async def _in_place(self, changed: dict[str, TaskEvent]) -> str:
        """Later pages never move under the reader: only their own rows are updated."""
        known = set(self._known)
        wanted = [task_id for task_id in changed if task_id in known]
        rows = await self._service.rows(wanted) if wanted else []
        return await self._rendered([overlay(row, changed[row.id]) for row in rows], False) if rows else ""

    async def _rendered(self, rows: list[Any], replace: bool) -> str:
        return self._render(rows, replace, await self._service.waiting_for(rows))

    async def _carry_missing(self, changed: dict[str, TaskEvent], on_page: set[str]) -> None:
        """Tasks with events but no row yet (another writer's batch may lag) are tried again later."""
        others = [task_id for task_id in changed if task_id not in on_page]
        found = {row.id for row in await self._service.rows(others)} if others else set()
        carried: dict[str, tuple[TaskEvent, int]] = {}
        for task_id in others:
            if task_id in found:
                continue
            tries = self._carried.get(task_id, (changed[task_id], 0))[1] + 1
            if tries <= MAX_CARRY:
                carried[task_id] = (changed[task_id], tries)
        self._carried = carried

    async def _page_rows(self) -> list[Any]:
        """The rows of the client's page as they are in the database now."""
        view = self._view
        page = await self._service.list_page(view.task_filter, limit=view.limit, offset=view.offset, count=False)
        return list(page.rows)


def client_view(request: Request) -> View:
    """The client's filter and page; a bad filter is a 422 before the stream starts (not an error in it)."""
    form = FilterForm.parse(request.query_params)
    if form.errors:
        raise HTTPException(status_code=422, detail="; ".join(form.errors))
    return View(task_filter=form.task_filter, offset=page_offset(request))


@router.get("/dashboard/events", response_class=EventSourceResponse, name="taskflow_events")
async def task_events(
    request: Request, principal: PrincipalDep, service: ServiceDep, view: Annotated[View, Depends(client_view)]
) -> AsyncIterator[ServerSentEvent]:
    """Live rows of the dashboard table (query: the table's filters and offset)."""
    admin = get_admin(request)

    def render(rows: list[Any], replace: bool, waiting: dict[str, Waiting]) -> str:
        context = {"rows": rows, "mode": "body" if replace else "rows", "waiting": waiting}
        return admin.renderer.fragment(request, "partials/dashboard_rows.html", context, principal=principal)

    manager = admin.task_manager
    stream = RowStream(
        service=service,
        bus=manager.events,
        stop=manager.shutting_down,
        view=view,
        render=render,
        flush=manager.flush if manager.running else None,
    )
    async for message in stream.events():
        yield message
