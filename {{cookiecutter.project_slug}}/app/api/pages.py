"""An extra dashboard page, built the way docs/admin.md describes: the reports of `build_report`.

`page` is passed to TaskAdmin(pages=[...]): its router is mounted under /tasks/dashboard behind
the admin's login, and "Reports" appears in the dashboard's navigation. The template extends
the admin's base.html and lives in app/templates/.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.taskflow.admin import AdminPage, PrincipalDep, get_admin
from app.taskflow.store import TaskFilter

router = APIRouter()


@router.get("/reports", response_class=HTMLResponse, name="reports_page")
async def reports_page(request: Request, principal: PrincipalDep) -> HTMLResponse:
    """The newest reports with their progress; reuses the admin's service and templates."""
    admin = get_admin(request)
    page = await admin.service.list_page(TaskFilter(name="build_report"), limit=20, offset=0)
    context = {"reports": page.rows, "total": page.total_label}
    return admin.renderer.render(request, "reports.html", context, principal=principal)


page = AdminPage(
    router=router, label="Reports", endpoint="reports_page", templates=Path(__file__).parent.parent / "templates"
)
