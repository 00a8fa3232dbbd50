"""Finish a freshly generated service: prune what the options did not select, write `.env`,
and make it a git repository whose `template` branch marks the generation commit.

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
import subprocess
import sys
from pathlib import Path

ANSWERS: dict[str, object] = json.loads(r"""{{ cookiecutter | jsonify }}""")
# The template's own folder (absolute), from the answers extension; single quotes because the
# JSON string starts with a double quote.
TEMPLATE_DIR = Path(json.loads(r'''{{ template_dir | jsonify }}'''))  # fmt: skip
ROOT = Path.cwd()
# scripts/update_template.py merges newer bakes of the template from this branch.
TEMPLATE_BRANCH = "template"

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


def template_commit() -> str:
    """The template's git commit, so that a service (and each update) records what it came from."""
    if shutil.which("git") is None:
        return "unknown (git is not installed)"
    head = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=TEMPLATE_DIR, capture_output=True, text=True)
    if head.returncode != 0:
        return "unknown (the template is not a git checkout)"
    status = subprocess.run(["git", "status", "--porcelain"], cwd=TEMPLATE_DIR, capture_output=True, text=True)
    return head.stdout.strip() + (" with uncommitted changes" if status.stdout.strip() else "")


def write_answers() -> None:
    # YAML accepts JSON strings, and json.dumps quotes every answer safely.
    lines = [
        "# Answers this service was generated with; scripts/update_template.py uses them.",
        f"# template commit: {template_commit()}",
        "default_context:",
    ]
    lines += [f"  {name}: {json.dumps(answer(name))}" for name in ANSWER_NAMES]
    (ROOT / ".cookiecutter-answers.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def git(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, env=env)


def make_repository() -> str:
    """Commit the service as generated on a new repository, with the `template` branch at that commit.

    Returns what happened, for the closing message. A failure never fails the bake: the service is
    complete without a repository, and docs/updating.md says how to make the branch by hand.
    """
    if (ROOT / ".git").exists():
        return ""  # baked again over a service (make demo): its repository is its owner's
    if shutil.which("git") is None:
        return "git is not installed: no repository made (see Updating in README.md to make one later)"
    inside = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=ROOT, capture_output=True, text=True)
    if inside.returncode == 0:
        return f"inside the git repository {inside.stdout.strip()}: no repository of its own made"
    try:
        git("init", "--quiet")
        env = dict(os.environ)
        # Without a git identity on this machine, the generation commit is the author's.
        if not has_config("user.email"):
            env.setdefault("GIT_AUTHOR_EMAIL", answer("author_email"))
            env.setdefault("GIT_COMMITTER_EMAIL", answer("author_email"))
        if not has_config("user.name"):
            env.setdefault("GIT_AUTHOR_NAME", answer("author_name"))
            env.setdefault("GIT_COMMITTER_NAME", answer("author_name"))
        git("add", "--all")
        message = f"Generate from the template\n\nTemplate commit: {template_commit()}\n"
        git("-c", "commit.gpgsign=false", "commit", "--quiet", "--no-verify", "-m", message, env=env)
        git("branch", TEMPLATE_BRANCH)
    except subprocess.CalledProcessError as error:
        return f"git failed ({error.stderr.strip() or error.returncode}): the repository is incomplete"
    return f"a git repository: the generation commit is on your branch and on `{TEMPLATE_BRANCH}`"


def has_config(name: str) -> bool:
    return subprocess.run(["git", "config", name], cwd=ROOT, capture_output=True, text=True).returncode == 0


def print_next_steps(repository: str) -> None:
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
    print("  docker compose up --build   # or the service and its servers in containers")
    if repository:
        print(f"It is {repository}." if repository.startswith("a git") else f"Note: {repository}.")


def main() -> int:
    prune_caches()
    prune_files()
    write_license()
    for relative in MARKED_FILES:
        prune_marked_lines(relative)
    write_env()
    write_answers()
    print_next_steps(make_repository())
    return 0


if __name__ == "__main__":
    sys.exit(main())
