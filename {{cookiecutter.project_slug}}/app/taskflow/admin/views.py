"""Context builders: one per page, shared by the page route and its fragment route.

Each takes the request's inputs and returns the template context; routes only pick the
template (page or partial), so a page and its fragment can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from ..models import ACTIVE_STATUSES, TaskStatus
from .charts import duration_chart, throughput_chart
from .filters import FilterForm
from .service import AdminService

PAGE_SIZE = 50
STATUSES = [status.value for status in TaskStatus]


@dataclass(frozen=True)
class Link:
    page: str  # for the address bar and for browsers without JavaScript
    partial: str  # the fragment htmx swaps in


@dataclass(frozen=True)
class Pager:
    """Links to the previous and next page (None when there is none)."""

    previous: Link | None
    next: Link | None


def _link(request: Request, route: str, params: dict[str, Any]) -> str:
    url = request.url_for(route).include_query_params(**{k: v for k, v in params.items() if v not in (None, "")})
    return str(url.path) + (f"?{url.query}" if url.query else "")


def _pager(request: Request, routes: tuple[str, str], query: dict[str, Any], offset: int, has_more: bool) -> Pager:
    def link(at: int) -> Link:
        params = {**query, "offset": at or None}
        return Link(_link(request, routes[0], params), _link(request, routes[1], params))

    return Pager(
        previous=link(max(0, offset - PAGE_SIZE)) if offset else None,
        next=link(offset + PAGE_SIZE) if has_more else None,
    )


MAX_OFFSET = 1_000_000


def page_offset(request: Request) -> int:
    """The page's offset: a missing, bad or out-of-range value is clamped, never a database error."""
    raw = request.query_params.get("offset", "0").strip()
    digits = raw.isascii() and raw.isdigit()
    if not digits or len(raw) > 7:  # longer is past MAX_OFFSET anyway
        return MAX_OFFSET if digits else 0
    return min(MAX_OFFSET, int(raw))


async def dashboard_context(request: Request, service: AdminService) -> dict[str, Any]:
    form = FilterForm.parse(request.query_params)
    offset = page_offset(request)
    page = await service.list_page(form.task_filter, limit=PAGE_SIZE, offset=offset)
    query = form.query()
    pager = _pager(request, ("taskflow_dashboard", "taskflow_partial_table"), query, offset, page.has_more)
    return {
        "form": form,
        "page": page,
        "rows": page.rows,
        "waiting": await service.waiting_for(page.rows),
        "pager": pager,
        "statuses": STATUSES,
        "names": [entry["name"] for entry in service.registry()],
        "table_url": _link(request, "taskflow_partial_table", {**query, "offset": offset or None}),
        "events_url": _link(request, "taskflow_events", {**query, "offset": offset or None}),
        # The fragment route sends this as HX-Replace-Url: the address bar shows the page, not the fragment.
        "page_url": _link(request, "taskflow_dashboard", {**query, "offset": offset or None}),
    }


async def metrics_context(request: Request, service: AdminService) -> dict[str, Any]:
    snapshot = await service.metrics()
    return {
        "snapshot": snapshot,
        "throughput": throughput_chart(snapshot),
        "durations": duration_chart(snapshot),
    }


async def task_context(request: Request, service: AdminService, task_id: str) -> dict[str, Any] | None:
    view = await service.task(task_id)
    if view is None:
        return None
    row = view.row
    return {
        "task": row,
        "active": TaskStatus(row.status) in ACTIVE_STATUSES,
        "attempts": view.attempts,
        "retried_as": view.retried_as,
        "waiting": view.waiting,
        "audit": view.audit,
        "duration": (row.finished_at - row.started_at).total_seconds()
        if row.started_at is not None and row.finished_at is not None
        else None,
    }


async def audit_context(request: Request, service: AdminService) -> dict[str, Any]:
    offset = page_offset(request)
    actor = (request.query_params.get("actor") or "").strip()[:200]
    task_id = (request.query_params.get("task_id") or "").strip()[:36]
    rows = await service.audit(limit=PAGE_SIZE + 1, offset=offset, task_id=task_id or None, actor=actor or None)
    query = {"actor": actor, "task_id": task_id}
    return {
        "page_url": _link(request, "taskflow_page_audit", {**query, "offset": offset or None}),
        "entries": rows[:PAGE_SIZE],
        "actor": actor,
        "task_id": task_id,
        "pager": _pager(
            request, ("taskflow_page_audit", "taskflow_partial_audit"), query, offset, len(rows) > PAGE_SIZE
        ),
    }


async def registry_context(request: Request, service: AdminService) -> dict[str, Any]:
    return {"specs": service.registry()}


async def schedules_context(request: Request, service: AdminService) -> dict[str, Any]:
    return {"schedules": await service.schedules()}
