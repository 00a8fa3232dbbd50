"""Each option bakes into a clean, lint-free project whose vendored module is copied verbatim."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import (
    OPTION_SETS,
    PROJECT_TEMPLATE,
    TEMPLATE_DIR,
    Bake,
    Options,
    copy_without_render,
    project_files,
)

Baked = Callable[[Options], Path]
ALL_SETS = pytest.mark.parametrize("options", list(OPTION_SETS.values()), ids=list(OPTION_SETS))

# Jinja that survived rendering: `{{ cookiecutter...`, any statement tag, or a variable
# reference such as `cookiecutter.project_slug` (but not a mention of cookiecutter.json).
LEFTOVER_JINJA = re.compile(r"\{\{-?\s*cookiecutter|\{%|cookiecutter\.(?!json\b)\w")
# Folders the service vendors: copied byte for byte, never rendered.
VENDORED = ("app/taskflow", "tests/taskflow")
# Folders of Jinja templates the service renders itself, at run time.
RUNTIME_TEMPLATES = ("app/taskflow/admin/templates", "app/templates")


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest() for path in project_files(root)
    }


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.lstrip().startswith("#")}


@ALL_SETS
def test_bake_creates_the_service_folder(baked: Baked, options: Options) -> None:
    project = baked(options)
    assert project.name == "my-service"
    for expected in ("pyproject.toml", "Makefile", ".gitignore", ".env.example", ".env", "app/main.py"):
        assert (project / expected).is_file(), expected


@ALL_SETS
def test_bake_leaves_no_jinja_behind(baked: Baked, options: Options) -> None:
    project = baked(options)
    leftovers = []
    for path in project_files(project):
        relative = path.relative_to(project).as_posix()
        if copy_without_render(relative):
            continue  # verbatim on purpose; test_vendored_folders_are_copied_verbatim checks these
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # a binary file cannot hold template text
        leftovers += [
            f"{relative}:{number}: {line.strip()}"
            for number, line in enumerate(text.splitlines(), 1)
            if LEFTOVER_JINJA.search(line)
        ]
    assert leftovers == []


@ALL_SETS
def test_bake_leaves_no_only_if_markers(baked: Baked, options: Options) -> None:
    project = baked(options)
    marked = [p.relative_to(project).as_posix() for p in project_files(project) if b"# only-if" in p.read_bytes()]
    assert marked == []


@ALL_SETS
def test_bake_passes_ruff(baked: Baked, options: Options) -> None:
    # The baked pyproject.toml carries the ruff configuration; --no-cache keeps the bake clean.
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "."],
        cwd=baked(options),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


TYPED_SETS = {"default": {}, "postgresql+redis": {"database": "postgresql", "use_redis": "yes"}}


@pytest.mark.parametrize("options", list(TYPED_SETS.values()), ids=list(TYPED_SETS))
def test_bake_type_checks_with_mypy(baked: Baked, tmp_path: Path, options: Options) -> None:
    # The baked pyproject.toml carries the mypy configuration: strict for app/taskflow, the
    # defaults for the rest of app. The cache goes to a temporary folder so the bake stays clean.
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache")],
        cwd=baked(options),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@ALL_SETS
def test_vendored_folders_are_copied_verbatim(baked: Baked, options: Options) -> None:
    # Equal to the template source in every bake, hence also byte-identical across bakes.
    assert tree_hashes(PROJECT_TEMPLATE / "app/taskflow"), "the template has no app/taskflow"
    project = baked(options)
    for folder in VENDORED:
        assert tree_hashes(project / folder) == tree_hashes(PROJECT_TEMPLATE / folder), folder


def test_runtime_jinja_templates_survive_baking(baked: Baked) -> None:
    project = baked({})
    sources = [path for folder in RUNTIME_TEMPLATES for path in project_files(PROJECT_TEMPLATE / folder)]
    if not sources:
        pytest.skip("the service has no Jinja templates yet (test_copy_without_render_covers_nested_files covers it)")
    with_jinja = 0
    for source in sources:
        relative = source.relative_to(PROJECT_TEMPLATE)
        assert (project / relative).read_bytes() == source.read_bytes(), relative
        with_jinja += b"{{" in source.read_bytes() or b"{%" in source.read_bytes()
    assert with_jinja > 0, "no Jinja expression found in the runtime templates"


def test_copy_without_render_covers_nested_files(bake_into: Bake, tmp_path: Path) -> None:
    # A copy of the template with Jinja files deeper than any pattern's literal part: proves the
    # _copy_without_render patterns (fnmatch: `*` also matches `/`) hold whatever the folders grow to.
    template = tmp_path / "template"
    shutil.copytree(
        TEMPLATE_DIR, template, ignore=shutil.ignore_patterns(".git", ".venv", "build", "__pycache__", ".*_cache")
    )
    page = "{% extends 'base.html' %}{% block body %}<td>{{ task.id }}</td>{% endblock %}\n"
    nested = [
        "app/taskflow/admin/templates/partials/deep/row.html",
        "app/taskflow/admin/static/vendor/htmx/ext.js",
        "app/templates/pages/home.html",
        "tests/taskflow/data/fixture.html",
    ]
    for relative in nested:
        path = template / PROJECT_TEMPLATE.name / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    project = bake_into(tmp_path / "out", template=template)
    for relative in nested:
        assert (project / relative).read_text(encoding="utf-8") == page, relative


@ALL_SETS
def test_postgresql_dependency_follows_database(baked: Baked, options: Options) -> None:
    pyproject = tomllib.loads((baked(options) / "pyproject.toml").read_text(encoding="utf-8"))
    wants_postgresql = options.get("database") == "postgresql"
    has_psycopg = any(dependency.startswith("psycopg") for dependency in pyproject["project"]["dependencies"])
    assert has_psycopg == wants_postgresql


@ALL_SETS
def test_env_example_follows_options(baked: Baked, options: Options) -> None:
    lines = (baked(options) / ".env.example").read_text(encoding="utf-8").splitlines()
    database_urls = [line for line in lines if line.startswith("DATABASE_URL=")]
    scheme = "postgresql+psycopg://" if options.get("database") == "postgresql" else "sqlite:///"
    assert len(database_urls) == 1 and database_urls[0].startswith(f"DATABASE_URL={scheme}"), database_urls
    assert any(line.startswith("REDIS_URL=") for line in lines) == (options.get("use_redis") == "yes")


@ALL_SETS
def test_env_file_follows_options(baked: Baked, options: Options) -> None:
    env = read_env(baked(options) / ".env")
    scheme = "postgresql+psycopg://" if options.get("database") == "postgresql" else "sqlite:///"
    assert env["DATABASE_URL"].startswith(scheme)
    assert ("REDIS_URL" in env) == (options.get("use_redis") == "yes")


def test_env_file_holds_fresh_secrets_per_bake(bake_into: Bake, tmp_path: Path) -> None:
    first, second = (read_env(bake_into(tmp_path / name) / ".env") for name in ("first", "second"))
    for key in ("SECRET_KEY", "ADMIN_PASSWORD"):
        assert len(first[key]) >= 20 and first[key] != "change-me", key
        assert first[key] != second[key], f"{key} is the same in two bakes"


def test_env_file_is_private_and_gitignored(baked: Baked) -> None:
    project = baked({})
    assert (project / ".env").stat().st_mode & 0o077 == 0, ".env is readable by other users"
    assert ".env" in (project / ".gitignore").read_text(encoding="utf-8").splitlines()
