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
    """A generated service: the bake is its own git repository, with the `template` branch."""
    return bake_into(tmp_path / "service")


def test_the_generated_service_is_a_repository_with_the_template_branch_at_generation(service: Path) -> None:
    assert git(service, "status", "--porcelain") == "", "the generation commit left files out"
    [generation] = git(service, "rev-list", "--all").split()
    assert git(service, "rev-parse", "HEAD").strip() == generation
    assert git(service, "rev-parse", "template").strip() == generation
    message = git(service, "log", "-1", "--format=%B")
    assert message.startswith("Generate from the template")
    assert "Template commit: " in message
    assert ".env" not in git(service, "ls-files").split(), "the secrets file was committed"


def bake_cli(tmp_path: Path, output_dir: Path, path: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "cookiecutter.yaml"
    config.write_text(f"cookiecutters_dir: {tmp_path / 'templates'}\nreplay_dir: {tmp_path / 'replay'}\n")
    command = [sys.executable, "-m", "cookiecutter", str(TEMPLATE_DIR), "--no-input", "--config-file", str(config)]
    env = {**os.environ, **GIT_ENV, "PATH": path}
    return subprocess.run(
        [*command, "--output-dir", str(output_dir)], capture_output=True, text=True, env=env, timeout=300
    )


def test_without_git_the_bake_completes_and_says_no_repository_was_made(tmp_path: Path) -> None:
    no_git = tmp_path / "bin-without-git"
    no_git.mkdir()
    result = bake_cli(tmp_path, tmp_path / "out", str(no_git))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Note: git is not installed: no repository made" in result.stdout
    assert (tmp_path / "out" / "my-service" / "app").is_dir()
    assert not (tmp_path / "out" / "my-service" / ".git").exists()


def test_inside_another_repository_the_bake_makes_no_nested_one(tmp_path: Path) -> None:
    monorepo = tmp_path / "monorepo"
    monorepo.mkdir()
    git(monorepo, "init", "--quiet")
    result = bake_cli(tmp_path, monorepo / "services", os.environ["PATH"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Note: inside the git repository {monorepo}" in result.stdout
    assert not (monorepo / "services" / "my-service" / ".git").exists()


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


def test_update_records_the_template_commit_it_pulled(service: Path, tmp_path: Path) -> None:
    template = newer_template(tmp_path, "Release 2 of the runner.")
    git(template, "init", "--quiet")
    git(template, "add", "--all")
    git(template, "commit", "--quiet", "-m", "Release 2")
    release = git(template, "rev-parse", "HEAD").strip()
    result = run(service, sys.executable, "scripts/update_template.py", str(template))
    assert result.returncode == 0, result.stdout + result.stderr
    message = git(service, "log", "-1", "--format=%B", "template")
    assert message.startswith(f"Template update from {template}")
    assert f"Template commit: {release}\n" in message


def test_update_prints_the_bakes_own_error(service: Path, tmp_path: Path) -> None:
    edit_line(service / ".cookiecutter-answers.yaml", 'database: "sqlite"', 'database: "mysql"')
    git(service, "commit", "--quiet", "-am", "A bad answer")
    result = run(service, sys.executable, "scripts/update_template.py", str(newer_template(tmp_path, "Release 2.")))
    assert result.returncode == 1
    assert "ERROR: baking " in result.stderr
    assert "ERROR: database='mysql' must be one of sqlite, postgresql (example: database=sqlite)" in result.stderr
    assert git(service, "status", "--porcelain") == ""


def test_update_without_cookiecutter_says_how_to_get_it(service: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    result = run(service, str(bare / "bin" / "python"), "scripts/update_template.py", str(tmp_path))
    assert result.returncode == 1
    assert "ERROR: cookiecutter is not installed" in result.stderr
    assert "make dev" in result.stderr


def test_manifest_lists_the_teams_changes_in_the_middle_of_a_conflict(service: Path, tmp_path: Path) -> None:
    runner = service / "app" / "taskflow" / "runner.py"
    edit_line(runner, '"""The runner:', '"""Our own runner note.\n\nThe runner:')
    git(service, "commit", "--quiet", "-am", "A local edit to the vendored runner")
    result = run(service, sys.executable, "scripts/update_template.py", str(newer_template(tmp_path, "Release 2.")))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "<<<<<<< " in runner.read_text(encoding="utf-8")
    # By path: the package itself cannot be imported while runner.py holds conflict markers.
    manifest = run(service, sys.executable, "app/taskflow/manifest.py")
    assert manifest.returncode == 1, manifest.stdout + manifest.stderr
    assert "changed  app/taskflow/runner.py" in manifest.stdout.splitlines()


def test_update_refuses_a_dirty_work_tree(service: Path, tmp_path: Path) -> None:
    (service / "app" / "tasks.py").write_text("# uncommitted\n", encoding="utf-8")
    result = run(service, sys.executable, "scripts/update_template.py", str(tmp_path))
    assert result.returncode == 1
    assert "ERROR: the work tree has uncommitted changes" in result.stderr
