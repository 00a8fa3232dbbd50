"""The documented update path (docs/updating.md): an edited service pulls a newer template."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import TEMPLATE_DIR, Bake

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def git(service: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=service, check=True, capture_output=True, text=True, env={**os.environ, **GIT_ENV}
    )
    return result.stdout


def run(service: Path, *command: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(list(command), cwd=service, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def service(bake_into: Bake, tmp_path: Path) -> Path:
    """A generated service in its own git repository, with the `template` branch at generation."""
    service = bake_into(tmp_path / "service")
    git(service, "init", "--quiet", "--initial-branch=main")
    git(service, "add", "--all")
    git(service, "commit", "--quiet", "-m", "Generate from the template")
    git(service, "branch", "template")
    return service


def newer_template(tmp_path: Path, edit: str) -> Path:
    """A copy of this template with one change to the vendored runner, as a newer release."""
    copy = tmp_path / "template-v2"
    shutil.copytree(
        TEMPLATE_DIR,
        copy,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "__pycache__", ".pytest_cache", ".ruff_cache"),
    )
    runner = copy / "{{cookiecutter.project_slug}}" / "app" / "taskflow" / "runner.py"
    runner.write_text(runner.read_text(encoding="utf-8").replace('"""The runner:', f'"""{edit}\n\nThe runner:', 1))
    return copy


def edit_line(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_update_merges_the_new_template_with_local_edits(service: Path, tmp_path: Path) -> None:
    edit_line(service / "app" / "tasks.py", "async def send_email(", "async def send_email(  # edited locally\n    ")
    git(service, "commit", "--quiet", "-am", "A local edit")
    template = newer_template(tmp_path, "Release 2 of the runner.")
    result = run(service, sys.executable, "scripts/update_template.py", str(template))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Release 2 of the runner." in (service / "app" / "taskflow" / "runner.py").read_text(encoding="utf-8")
    assert "# edited locally" in (service / "app" / "tasks.py").read_text(encoding="utf-8")
    assert git(service, "status", "--porcelain") == ""
    guard = run(service, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_repository.py")
    assert guard.returncode == 0, guard.stdout


def test_a_conflicting_update_stops_and_the_tests_refuse_the_markers(service: Path, tmp_path: Path) -> None:
    runner = service / "app" / "taskflow" / "runner.py"
    edit_line(runner, '"""The runner:', '"""Our own runner note.\n\nThe runner:')
    git(service, "commit", "--quiet", "-am", "A local edit to the vendored runner")
    template = newer_template(tmp_path, "Release 2 of the runner.")
    result = run(service, sys.executable, "scripts/update_template.py", str(template))
    assert result.returncode == 1
    assert "ERROR: the merge stopped at conflicts" in result.stderr
    assert "<<<<<<< " in runner.read_text(encoding="utf-8")
    guard = run(service, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_repository.py")
    assert guard.returncode == 1
    assert "app/taskflow/runner.py" in guard.stdout


def test_update_refuses_a_dirty_work_tree(service: Path, tmp_path: Path) -> None:
    (service / "app" / "tasks.py").write_text("# uncommitted\n", encoding="utf-8")
    result = run(service, sys.executable, "scripts/update_template.py", str(tmp_path))
    assert result.returncode == 1
    assert "ERROR: the work tree has uncommitted changes" in result.stderr
