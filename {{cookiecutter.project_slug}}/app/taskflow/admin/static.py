"""The admin's static files: an allow-list of vendored files, served behind the admin's auth.

Anything not in the list is a 404 (no directory listing, no path tricks).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC = Path(__file__).parent / "static"
FILES = {
    "htmx.min.js": "text/javascript",
    "htmx-ext-sse.min.js": "text/javascript",
    "dashboard.js": "text/javascript",
    "admin.css": "text/css",
}

router = APIRouter()
public = APIRouter()  # the login form's stylesheet: the one file served without credentials


@public.get("/login/style.css", name="taskflow_login_style", include_in_schema=False)
async def login_style() -> FileResponse:
    return FileResponse(STATIC / "login.css", media_type="text/css", headers={"Cache-Control": "max-age=86400"})


@router.get("/dashboard/static/{filename}", name="taskflow_static", include_in_schema=False)
async def static_file(filename: str) -> FileResponse:
    media_type = FILES.get(filename)
    if media_type is None:
        raise HTTPException(status_code=404, detail="no such file")
    # Private: the files sit behind the admin's login. URLs carry ?v=<version>, so caching is safe.
    return FileResponse(STATIC / filename, media_type=media_type, headers={"Cache-Control": "private, max-age=86400"})
