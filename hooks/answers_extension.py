"""Jinja extension (cookiecutter.json `_extensions`): answers stay literal and are checked early.

cookiecutter renders every answer given on the command line or in a config file as a Jinja
template, so `project_name="{{ 7*7 }}"` would become `49` (and any expression would run).
`preprocess` turns every string this template does not ship itself into a Jinja string literal,
so an answer is kept exactly as typed; the checks then refuse braces where they do not belong.

The `checked_answers` filter runs the answer rules while cookiecutter asks its questions (the
last variable of cookiecutter.json uses it), before it creates any folder: a bad answer stops the
bake with one ``ERROR:`` line each and leaves nothing behind, not even an empty output folder.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from cookiecutter.exceptions import FailedHookException
from jinja2 import Environment
from jinja2.ext import Extension
from slugify import slugify

from .answer_rules import SLUG_MAX_LENGTH, error_lines

TEMPLATE = Path(__file__).resolve().parent.parent
PROJECT_FOLDER = "{{cookiecutter.project_slug}}"


def own_sources() -> frozenset[str]:
    """The strings with Jinja that the template itself renders: defaults, folder name, hooks."""
    context = json.loads((TEMPLATE / "cookiecutter.json").read_text(encoding="utf-8"))
    defaults = {value for value in context.values() if isinstance(value, str)}
    hooks = {path.read_text(encoding="utf-8") for path in (TEMPLATE / "hooks").glob("*_gen_project.py")}
    return frozenset({*defaults, *hooks, PROJECT_FOLDER})


OWN_SOURCES = own_sources()


class BadAnswers(FailedHookException):
    """One or more answers break the rules; the message holds one ERROR line per answer."""


def derive_slug(project_name: str) -> str:
    return slugify(project_name, max_length=SLUG_MAX_LENGTH, word_boundary=True)


class AnswersExtension(Extension):
    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters["project_slug"] = derive_slug
        environment.filters["checked_answers"] = checked_answers
        environment.globals["answer_rules_dir"] = str(TEMPLATE / "hooks")
        environment.globals["template_dir"] = str(TEMPLATE)

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        # Files of the template are loaded by name; only answers and the few strings above come
        # as bare strings, and of those only the template's own may hold live Jinja.
        if name is not None or "{" not in source or source in OWN_SOURCES:
            return source
        return "{{ " + json.dumps(source, ensure_ascii=False) + " }}"


def checked_answers(answers: Mapping[str, object]) -> str:
    slug_derived = answers.get("project_slug") == derive_slug(str(answers.get("project_name", "")))
    lines = error_lines(answers, slug_derived=slug_derived)
    if lines:
        raise BadAnswers("\n".join(lines))
    return "yes"
