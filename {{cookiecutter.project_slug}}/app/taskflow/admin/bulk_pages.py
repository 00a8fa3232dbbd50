"""The bulk actions on the dashboard: plain forms, each confirmed on a page of its own.

The task table's action bar posts the chosen action and the ticked rows (or the table's
filters) to /dashboard/bulk/confirm, which shows what would be done and posts it on to
/dashboard/bulk/run; the result page lists the counts. Purge goes the same way through
/dashboard/bulk/purge/confirm and /dashboard/bulk/purge. Every step is a guarded mutation route
(role, origin, CSRF token), so no step works without JavaScript any less than with it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.datastructures import FormData

from .api import ServiceDep
from .bulk import MAX_BULK, BulkAction, BulkActions, BulkInputError, Selection
from .filters import FilterForm
from .guards import ActorDep
from .pages import render

router = APIRouter(prefix="/dashboard/bulk", default_response_class=HTMLResponse)

# Words for the pages: what each action and outcome is called.
VERBS = {BulkAction.RETRY: "Retry", BulkAction.CANCEL: "Cancel", BulkAction.DELETE: "Delete"}
OUTCOME_LABELS = {
    "retried": "retried",
    "cancelled": "cancelled",
    "cancelling": "asked to stop (running)",
    "deleted": "deleted",
    "not_found": "skipped: no such task",
    "not_retryable": "skipped: not failed, cancelled or interrupted",
    "already_finished": "skipped: already finished",
    "not_finished": "skipped: not finished",
}


def _refused(request: Request, principal: Any, message: str) -> HTMLResponse:
    return render(request, principal, "refused.html", {"message": message}, status_code=422)


def _chosen(form: FormData) -> tuple[BulkAction, Selection, FilterForm]:
    """What the action bar (or the confirmation page) posted: the action, the tasks, the filters."""
    return (_action(form), *_selection(form))


def _action(form: FormData) -> BulkAction:
    value = form.get("action")
    try:
        return BulkAction(value if isinstance(value, str) else "")
    except ValueError:
        known = ", ".join(action.value for action in BulkAction)
        raise BulkInputError(f"unknown bulk action {value!r}; choose one of {known}") from None


def _selection(form: FormData) -> tuple[Selection, FilterForm]:
    """The ticked ids, or with scope=filter the filters the form carries."""
    filters = FilterForm.parse({key: value for key, value in form.items() if isinstance(value, str)})
    if form.get("scope") == "filter":
        if filters.errors:
            raise BulkInputError("; ".join(filters.errors))
        return Selection.of_filter(filters.task_filter), filters
    ids = [value for value in form.getlist("ids") if isinstance(value, str)]
    if not ids:
        raise BulkInputError("no task selected: tick the rows to act on, or choose all matching the filter")
    return Selection.of_ids(ids), filters


@router.post("/confirm", name="taskflow_page_bulk_confirm")
async def confirm(request: Request, principal: ActorDep, service: ServiceDep) -> HTMLResponse:
    try:
        action, selection, filters = _chosen(await request.form())
    except BulkInputError as error:
        return _refused(request, principal, str(error))
    plan = await BulkActions(service).plan(action, selection)
    context = {
        "plan": plan,
        "verb": VERBS[action],
        "filters": filters,
        "labels": OUTCOME_LABELS,
        "max_bulk": MAX_BULK,
    }
    return render(request, principal, "bulk_confirm.html", context)


@router.post("/run", name="taskflow_page_bulk_run")
async def run(request: Request, principal: ActorDep, service: ServiceDep) -> HTMLResponse:
    try:
        action, selection, filters = _chosen(await request.form())
    except BulkInputError as error:
        return _refused(request, principal, str(error))
    report = await BulkActions(service).run(principal, action, selection)
    context = {"report": report, "verb": VERBS[action], "filters": filters, "labels": OUTCOME_LABELS}
    return render(request, principal, "bulk_result.html", context)


def _older_than(form: FormData) -> str:
    value = form.get("older_than")
    return value.strip() if isinstance(value, str) else ""


@router.post("/purge/confirm", name="taskflow_page_purge_confirm")
async def purge_confirm(request: Request, principal: ActorDep, service: ServiceDep) -> HTMLResponse:
    try:
        plan = await BulkActions(service).plan_purge(_older_than(await request.form()))
    except BulkInputError as error:
        return _refused(request, principal, str(error))
    return render(request, principal, "purge_confirm.html", {"plan": plan, "max_bulk": MAX_BULK})


@router.post("/purge", name="taskflow_page_purge")
async def purge(request: Request, principal: ActorDep, service: ServiceDep) -> HTMLResponse:
    try:
        report = await BulkActions(service).purge(principal, _older_than(await request.form()))
    except BulkInputError as error:
        return _refused(request, principal, str(error))
    return render(request, principal, "purge_result.html", {"report": report, "max_bulk": MAX_BULK})
