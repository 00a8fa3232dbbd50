"""Finish a freshly generated service: prune what the options did not select, write `.env`.

Standard library only, and never crashes on a file that is already gone. Files that tools
rewrite (pyproject.toml) carry no Jinja: a line that belongs to one option ends with a marker
comment ``# only-if NAME=VALUE``; lines for unselected values are removed and the marker is
stripped from the rest.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sys
from pathlib import Path

ANSWERS: dict[str, object] = json.loads(r"""{{ cookiecutter | jsonify }}""")
ROOT = Path.cwd()

# Whole files or folders that only one option value needs.
ONLY_FOR: dict[tuple[str, str], list[str]] = {
    ("use_redis", "yes"): ["tests/test_redis_events.py"],
    ("database", "postgresql"): ["tests/test_postgresql.py"],
}
MARKED_FILES = ["pyproject.toml", ".env.example", "README.md", ".github/workflows/ci.yml"]
# Left behind in the template folder by running its tests or linters there; never part of a bake.
CACHES = ("__pycache__", ".pytest_cache", ".ruff_cache", "test-artifacts")
KEPT = {".venv", ".git"}
MARKER = re.compile(r"\s*# only-if (\w+)=([\w.-]+)\s*$")


def answer(name: str) -> str:
    return str(ANSWERS.get(name, ""))


def remove(relative: str) -> None:
    path = ROOT / relative
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def prune_files() -> None:
    for (name, value), paths in ONLY_FOR.items():
        if answer(name) != value:
            for relative in paths:
                remove(relative)


def prune_caches() -> None:
    for name in CACHES:
        for path in sorted(ROOT.rglob(name), reverse=True):
            # A re-bake over a service (make demo) keeps its .venv and .git as they are.
            if path.is_dir() and not KEPT & set(path.relative_to(ROOT).parts):
                shutil.rmtree(path, ignore_errors=True)


def prune_marked_lines(relative: str) -> None:
    path = ROOT / relative
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        match = MARKER.search(line.rstrip("\n"))
        if match is None:
            kept.append(line)
        elif answer(match.group(1)) == match.group(2):
            kept.append(line[: match.start()] + "\n")
    path.write_text("".join(kept), encoding="utf-8")


def write_license() -> None:
    # licenses/ holds one rendered text per licence choice; the chosen one becomes LICENSE.
    chosen = ROOT / "licenses" / f"{answer('license')}.txt"
    if chosen.is_file():
        chosen.replace(ROOT / "LICENSE")
    remove("licenses")


def database_url() -> str:
    if answer("database") == "postgresql":
        name = answer("project_slug").replace("-", "_")
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    return "sqlite:///./data/app.db"


def write_env() -> None:
    env = ROOT / ".env"
    if env.exists():
        return
    lines = [
        "# Written by the template for this checkout only; never commit it (.gitignore).",
        f'APP_NAME="{answer("project_name")}"',
        f"DATABASE_URL={database_url()}",
        f"SECRET_KEY={secrets.token_urlsafe(32)}",
        f"ADMIN_USERNAME={answer('admin_username')}",
        f"ADMIN_PASSWORD={secrets.token_urlsafe(18)}",
    ]
    if answer("use_redis") == "yes":
        lines.append("REDIS_URL=redis://127.0.0.1:6379/0")
    env.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env.chmod(0o600)


# The answers a later template update bakes again with (scripts/update_template.py); no secrets.
ANSWER_NAMES = (
    "project_name",
    "project_slug",
    "description",
    "author_name",
    "author_email",
    "python_version",
    "database",
    "use_redis",
    "admin_username",
    "license",
)


def write_answers() -> None:
    # YAML accepts JSON strings, and json.dumps quotes every answer safely.
    lines = ["# Answers this service was generated with; scripts/update_template.py uses them.", "default_context:"]
    lines += [f"  {name}: {json.dumps(answer(name))}" for name in ANSWER_NAMES]
    (ROOT / ".cookiecutter-answers.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def print_next_steps() -> None:
    slug = answer("project_slug")
    # The address `make run` will use: the same HOST and PORT variables, with its defaults.
    url = f"http://{os.environ.get('HOST') or '127.0.0.1'}:{os.environ.get('PORT') or '8000'}"
    print(f"\nCreated {slug}/. Next steps:")
    print(f"  cd {slug}")
    if answer("database") == "postgresql":
        print("  createdb -h 127.0.0.1 -U postgres " + slug.replace("-", "_") + "   # or edit DATABASE_URL in .env")
    print(f"  make run     # serves {url} (HOST=... PORT=... to change; login for {url}/tasks/dashboard in .env)")
    print("  make dev     # the same, restarting when the code changes")
    print("  make test    # ruff lint, ruff format check and the service's tests")


def main() -> int:
    prune_caches()
    prune_files()
    write_license()
    for relative in MARKED_FILES:
        prune_marked_lines(relative)
    write_env()
    write_answers()
    print_next_steps()
    return 0


if __name__ == "__main__":
    sys.exit(main())
