"""The admin's Jinja environment: autoescape on, display filters registered in one place.

Pages and fragments are rendered only through `Renderer.render`, which adds what every template
needs (the admin, the principal, the CSRF token, the navigation). Templates of added pages
(see docs/admin.md) are looked up first, so a service can also override any admin template.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from starlette.datastructures import URL

from ..models import utcnow
from ..options import PRIORITY_MAX, PRIORITY_MIN
from ..storable import displayable
from .auth import Principal

if TYPE_CHECKING:
    from . import TaskAdmin

TEMPLATES = Path(__file__).parent / "templates"


def _dt(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _age(value: datetime | None) -> str:
    if value is None:
        return ""
    seconds = (utcnow() - value).total_seconds()
    if seconds < 0:
        return f"in {_span(-seconds)}"
    return f"{_span(seconds)} ago"


def _span(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}%"


def _pretty_json(text: str | None) -> str:
    """Stored JSON, indented; the result is still escaped by autoescape where it is shown."""
    if text is None:
        return ""
    try:
        return json.dumps(displayable(json.loads(text)), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def _from_json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return displayable(json.loads(text))
    except ValueError:
        return None


def create_templates(extra_dirs: Sequence[Path] = ()) -> Jinja2Templates:
    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader([*extra_dirs, TEMPLATES])])
    # autoescape=True for every template (not only *.html): task data is never trusted.
    environment = jinja2.Environment(loader=loader, autoescape=True, trim_blocks=True, lstrip_blocks=True)
    environment.filters.update(
        dt=_dt, age=_age, span=_span, percent=_percent, pretty_json=_pretty_json, from_json=_from_json
    )
    environment.globals["url_for"] = _url_builder()  # before Jinja2Templates adds its absolute-URL one
    environment.globals.update(priority_min=PRIORITY_MIN, priority_max=PRIORITY_MAX)  # the filter's bounds
    return Jinja2Templates(env=environment)


def _url_builder() -> Callable[..., URL]:
    """`url_for` for templates: root-relative URLs (right behind any proxy), cheap enough per row.

    Resolving a route name walks the app's routes, and a table renders three links per row. So
    each (name, parameter names) is resolved once with placeholders, and later calls only put
    the values in.
    """
    shapes: dict[tuple[str, str, tuple[str, ...]], str] = {}

    @jinja2.pass_context
    def url_for(context: Any, name: str, /, **path_params: Any) -> URL:
        request: Request = context["request"]
        key = (request.scope.get("root_path", ""), name, tuple(sorted(path_params)))
        shape = shapes.get(key)
        if shape is None:
            placeholders = {param: f"__taskflow_{param}__" for param in path_params}
            shape = shapes[key] = request.url_for(name, **placeholders).path
        path = shape
        for param, value in path_params.items():
            path = path.replace(f"__taskflow_{param}__", quote(str(value), safe=""))
        return URL(path)

    return url_for


class Renderer:
    def __init__(self, admin: TaskAdmin, templates: Jinja2Templates) -> None:
        self.admin = admin
        self.templates = templates

    def render(
        self,
        request: Request,
        name: str,
        context: dict[str, Any],
        *,
        principal: Principal,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> HTMLResponse:
        csrf = principal.csrf
        # Open admin: give the browser a CSRF nonce anyway (its form posts are checked like any other).
        issue_session = principal.via == "open" and self.admin.credentials.open
        if issue_session:
            csrf = self.admin.sessions.new_nonce()
        full = {
            "admin": self.admin,
            "principal": principal,
            "csrf_token": csrf or "",
            "nav": self.admin.nav,
            "version": self.admin.version,
            **context,
        }
        response = self.templates.TemplateResponse(request, name, full, status_code=status_code, headers=headers)
        if issue_session:
            self.admin.sessions.issue(request, response, username=None, password=None, csrf=csrf)
        return response

    def fragment(self, request: Request, name: str, context: dict[str, Any], *, principal: Principal) -> str:
        """A fragment as text (the event stream sends rows this way)."""
        full = {"request": request, "admin": self.admin, "principal": principal, "csrf_token": principal.csrf or ""}
        return self.templates.get_template(name).render({**full, **context})
