"""The generated CI follows the answers: its Python matrix, pyproject.toml and ruff agree.

The workflow is parsed as YAML and the Makefile's commands are read with `make -n` (what make
would run), so the checks see what GitHub and make see, not a text pattern.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from hooks.answer_rules import CHOICES
from tests.conftest import Bake

PYTHONS = CHOICES["python_version"]
NEWEST = PYTHONS[-1]


def workflow(project: Path) -> dict[str, Any]:
    document = yaml.safe_load((project / ".github/workflows/ci.yml").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def make_commands(project: Path, target: str) -> list[str]:
    result = subprocess.run(["make", "-n", target], cwd=project, capture_output=True, text=True, check=True)
    return result.stdout.splitlines()


def ruff_target_version(project: Path) -> str:
    """The Python version ruff itself resolves for the project, from its own settings dump."""
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--show-settings", "."],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    [line] = [line for line in result.stdout.splitlines() if line.startswith("linter.unresolved_target_version")]
    return line.split("=", 1)[1].strip()


@pytest.mark.parametrize("python_version", PYTHONS)
def test_ci_matrix_pyproject_and_ruff_agree_on_the_lowest_python(
    bake_into: Bake, tmp_path: Path, python_version: str
) -> None:
    project = bake_into(tmp_path, python_version=python_version)
    [job] = workflow(project)["jobs"].values()
    matrix = job["strategy"]["matrix"]["python-version"]
    assert matrix == list(PYTHONS[PYTHONS.index(python_version) :]), "from the lowest supported to the newest"
    assert matrix[-1] == NEWEST
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["requires-python"] == f">={python_version}"
    assert pyproject["tool"]["ruff"]["target-version"] == "py" + python_version.replace(".", "")
    assert ruff_target_version(project) == python_version
    [setup] = [step for step in job["steps"] if str(step.get("uses", "")).startswith("actions/setup-python")]
    assert setup["with"]["python-version"] == "${{ matrix.python-version }}"


@pytest.mark.parametrize("database", CHOICES["database"])
def test_ci_runs_lint_format_check_and_tests_against_postgresql_and_redis(
    bake_into: Bake, tmp_path: Path, database: str
) -> None:
    project = bake_into(tmp_path, database=database, use_redis="yes")
    [job] = workflow(project)["jobs"].values()
    services = job["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["postgres"]["ports"] == ["5432:5432"]
    assert services["redis"]["image"].startswith("redis:")
    assert services["redis"]["ports"] == ["6379:6379"]
    env = job["env"]
    assert env["CI"] == "true", "with CI=true a missing server fails the tests instead of skipping them"
    assert env["TEST_POSTGRES_URL"].startswith("postgresql+psycopg://postgres@127.0.0.1:5432/")
    assert env["TEST_REDIS_URL"].startswith("redis://127.0.0.1:6379/")
    # A PostgreSQL service runs its whole suite on PostgreSQL; a SQLite one on SQLite.
    assert ("TEST_DATABASE_URL" in env) == (database == "postgresql")
    runs = [step["run"] for step in job["steps"] if "run" in step]
    assert "make test" in runs
    commands = make_commands(project, "test")
    for expected in (".venv/bin/ruff check .", ".venv/bin/ruff format --check .", ".venv/bin/python -m pytest"):
        assert expected in commands, commands
