"""The rules every cookiecutter answer must follow, shared by the two places that check them.

`answers_extension.py` checks the answers while cookiecutter asks them, before it creates a
folder; `pre_gen_project.py` checks them again for a replayed bake, which asks nothing. Each bad
answer gives one ``ERROR:`` line naming the answer, the rule and a valid example. Standard
library only: the hooks run on whatever Python runs cookiecutter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

SLUG = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
USERNAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# The first value of each is the default (cookiecutter.json holds the same one).
CHOICES: dict[str, tuple[str, ...]] = {
    "python_version": ("3.11", "3.12", "3.13"),
    "database": ("sqlite", "postgresql"),
    "use_redis": ("no", "yes"),
    "license": ("MIT", "Apache-2.0", "BSD-3-Clause", "Proprietary"),
}
PRINTABLE_LINE = re.compile(r"[^\x00-\x1f\x7f]*")
SLUG_MAX_LENGTH = 60


def check_project_name(value: str) -> str | None:
    if not value.strip():
        return "must not be empty (example: project_name='Billing Service')"
    if len(value) > 80 or not PRINTABLE_LINE.fullmatch(value):
        return "must be one line of at most 80 printable characters (example: project_name='Billing Service')"
    if any(c in value for c in "\"'\\`{}<>$"):
        return "must not contain quotes, backslashes, braces, <, > or $ (example: project_name='Billing Service')"
    return None


def check_project_slug(value: str) -> str | None:
    if not SLUG.fullmatch(value):
        return (
            "must be lower case letters, digits and single hyphens, starting with a letter "
            "(example: project_slug=billing-service)"
        )
    if len(value) > SLUG_MAX_LENGTH:
        return f"must be at most {SLUG_MAX_LENGTH} characters (example: project_slug=billing-service)"
    return None


def check_description(value: str) -> str | None:
    if len(value) > 200 or not PRINTABLE_LINE.fullmatch(value) or any(c in value for c in '"\\`{}'):
        return (
            "must be one line of at most 200 characters without double quotes, backslashes or braces "
            "(example: description='Sends invoices')"
        )
    return None


def check_author_name(value: str) -> str | None:
    one_line = PRINTABLE_LINE.fullmatch(value) is not None
    if not value.strip() or len(value) > 80 or not one_line or any(c in value for c in '"\\`{}'):
        return (
            "must be a name of 1 to 80 characters without double quotes, backslashes or braces "
            "(example: author_name='Ada Lovelace')"
        )
    return None


def check_author_email(value: str) -> str | None:
    if not EMAIL.fullmatch(value) or any(c in value for c in "\"'\\`{}<>"):
        return "must be an email address (example: author_email=ada@example.com)"
    return None


def check_admin_username(value: str) -> str | None:
    if not USERNAME.fullmatch(value):
        return "must be 1 to 64 letters, digits, '_', '.' or '-' (example: admin_username=admin)"
    return None


def choice_check(name: str) -> Callable[[str], str | None]:
    allowed = CHOICES[name]

    def check(value: str) -> str | None:
        if value not in allowed:
            return f"must be one of {', '.join(allowed)} (example: {name}={allowed[0]})"
        return None

    return check


CHECKS: dict[str, Callable[[str], str | None]] = {
    "project_name": check_project_name,
    "project_slug": check_project_slug,
    "description": check_description,
    "author_name": check_author_name,
    "author_email": check_author_email,
    "admin_username": check_admin_username,
    **{name: choice_check(name) for name in CHOICES},
}


def error_lines(answers: Mapping[str, object], slug_derived: bool) -> list[str]:
    """One ``ERROR:`` line per bad answer; [] when every answer is fine.

    A slug derived from a bad name is not reported on its own: fixing the name fixes it.
    """
    lines = []
    for name, check in CHECKS.items():
        raw = answers.get(name, "")
        value = raw if isinstance(raw, str) else str(raw)
        problem = check(value)
        if problem is None:
            continue
        if name == "project_slug" and slug_derived:
            if any(line.startswith("ERROR: project_name=") for line in lines):
                continue
            problem = f"(derived from project_name; pass project_slug to choose it) {problem}"
        lines.append(f"ERROR: {name}={value!r} {problem}")
    return lines
