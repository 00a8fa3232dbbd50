"""Validate every cookiecutter answer before anything is generated.

The answers arrive as one JSON document inside a raw string: JSON escapes every quote and
backslash, so no answer can end the string early or inject code into this hook. Each bad
answer prints one ``ERROR:`` line naming the answer, the rule and a valid example; the hook
then exits 1 and cookiecutter removes the half-made folder. Standard library only.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable

ANSWERS: dict[str, object] = json.loads(r"""{{ cookiecutter | jsonify }}""")

SLUG = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
USERNAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
CHOICES = {
    "python_version": ("3.11", "3.12", "3.13"),
    "database": ("sqlite", "postgresql"),
    "use_redis": ("no", "yes"),
    "license": ("MIT", "Apache-2.0", "BSD-3-Clause", "Proprietary"),
}
PRINTABLE_LINE = re.compile(r"[^\x00-\x1f\x7f]*")


def _text(name: str) -> str:
    value = ANSWERS.get(name, "")
    return value if isinstance(value, str) else str(value)


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
    if len(value) > 60:
        return "must be at most 60 characters (example: project_slug=billing-service)"
    return None


def check_description(value: str) -> str | None:
    if len(value) > 200 or not PRINTABLE_LINE.fullmatch(value) or any(c in value for c in "\"\\`{}"):
        return (
            "must be one line of at most 200 characters without double quotes, backslashes or braces "
            "(example: description='Sends invoices')"
        )
    return None


def check_author_name(value: str) -> str | None:
    one_line = PRINTABLE_LINE.fullmatch(value) is not None
    if not value.strip() or len(value) > 80 or not one_line or any(c in value for c in "\"\\`{}"):
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


def main() -> int:
    failed = False
    for name, check in CHECKS.items():
        value = _text(name)
        problem = check(value)
        if problem:
            print(f"ERROR: {name}={value!r} {problem}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
