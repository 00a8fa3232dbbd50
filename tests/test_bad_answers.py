"""Bad answers are refused before anything is generated, with one ERROR line naming the answer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cookiecutter.exceptions import CookiecutterException
from cookiecutter.main import cookiecutter

from tests.conftest import TEMPLATE_DIR, Bake

# A string that would run code if a hook pasted the answer into Python source unescaped.
INJECTION = 'x"""; import os; os.system("touch {marker}") #'

# id -> (answers, the answer the ERROR line must name)
BAD_ANSWERS: dict[str, tuple[dict[str, str], str]] = {
    "slug-with-spaces": ({"project_slug": "My Service"}, "project_slug"),
    "slug-upper-case": ({"project_slug": "MyService"}, "project_slug"),
    "slug-leading-digit": ({"project_slug": "1service"}, "project_slug"),
    "slug-trailing-hyphen": ({"project_slug": "service-"}, "project_slug"),
    "empty-project-name": ({"project_name": "", "project_slug": "billing"}, "project_name"),
    "blank-project-name": ({"project_name": "   ", "project_slug": "billing"}, "project_name"),
    "quote-injection-in-project-name": ({"project_name": INJECTION, "project_slug": "billing"}, "project_name"),
    "quote-injection-in-description": ({"description": INJECTION}, "description"),
    "bad-author-email": ({"author_email": "not-an-email"}, "author_email"),
    "admin-username-with-space": ({"admin_username": "the admin"}, "admin_username"),
}


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("ERROR:")]


def assert_nothing_generated(output_dir: Path, marker: Path) -> None:
    assert not output_dir.exists() or list(output_dir.iterdir()) == [], "the failed bake left files behind"
    assert not marker.exists(), "an answer ran code inside a hook"
    assert not (TEMPLATE_DIR / "PWNED").exists(), "an answer ran code inside a hook"


@pytest.mark.parametrize(("answers", "named"), list(BAD_ANSWERS.values()), ids=list(BAD_ANSWERS))
def test_bad_answer_is_refused(
    bake_into: Bake, tmp_path: Path, capfd: pytest.CaptureFixture[str], answers: dict[str, str], named: str
) -> None:
    marker = tmp_path / "PWNED"
    answers = {name: value.format(marker=marker) for name, value in answers.items()}
    output_dir = tmp_path / "out"
    with pytest.raises(CookiecutterException):
        bake_into(output_dir, **answers)
    assert_nothing_generated(output_dir, marker)
    # The hook runs as a child process writing to the inherited stderr, which capfd captures.
    errors = error_lines(capfd.readouterr().err)
    assert any(line.startswith(f"ERROR: {named}=") for line in errors), errors


def test_unknown_choice_on_the_command_line_is_refused_by_cookiecutter(bake_into: Bake, tmp_path: Path) -> None:
    # cookiecutter itself checks choice overrides before any hook runs.
    output_dir = tmp_path / "out"
    with pytest.raises(ValueError, match="mysql"):
        bake_into(output_dir, database="mysql")
    assert_nothing_generated(output_dir, tmp_path / "PWNED")


def test_unknown_choice_in_a_replay_file_is_refused_by_the_hook(
    cookiecutter_config: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # A replay file skips cookiecutter's own choice check, so only the pre-gen hook stands guard.
    config = tmp_path / "config.yaml"
    replay_dir = tmp_path / "replay"
    config.write_text(f"cookiecutters_dir: {tmp_path / 'templates'}\nreplay_dir: {replay_dir}\n", encoding="utf-8")
    cookiecutter(str(TEMPLATE_DIR), no_input=True, output_dir=str(tmp_path / "good"), config_file=str(config))
    [recorded] = replay_dir.glob("*.json")
    context = json.loads(recorded.read_text(encoding="utf-8"))
    context["cookiecutter"]["database"] = "mysql"
    bad_replay = tmp_path / "bad-replay.json"
    bad_replay.write_text(json.dumps(context), encoding="utf-8")
    capfd.readouterr()

    output_dir = tmp_path / "out"
    with pytest.raises(CookiecutterException):
        cookiecutter(str(TEMPLATE_DIR), replay=str(bad_replay), output_dir=str(output_dir), config_file=str(config))
    assert_nothing_generated(output_dir, tmp_path / "PWNED")
    assert error_lines(capfd.readouterr().err) == [
        "ERROR: database='mysql' must be one of sqlite, postgresql (example: database=sqlite)"
    ]


def test_cli_slug_with_spaces_prints_one_error_line_and_generates_nothing(
    cookiecutter_config: Path, tmp_path: Path
) -> None:
    # Exactly the README's failure example, run in a copy of the template so that a bug could
    # only ever generate into that copy.
    template = tmp_path / "template"
    shutil.copytree(
        TEMPLATE_DIR, template, ignore=shutil.ignore_patterns(".git", ".venv", "build", "__pycache__", ".*_cache")
    )
    before = sorted(path.name for path in template.iterdir())
    result = subprocess.run(
        [sys.executable, "-m", "cookiecutter", ".", "--no-input", "project_slug=My Service"],
        cwd=template,
        env={**os.environ, "COOKIECUTTER_CONFIG": str(cookiecutter_config)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert sorted(path.name for path in template.iterdir()) == before, "the failed bake generated files"
    # stderr is the hook's alone: one line. (cookiecutter adds its own notice on stdout.)
    assert result.stderr.splitlines() == [
        "ERROR: project_slug='My Service' must be lower case letters, digits and single hyphens, "
        "starting with a letter (example: project_slug=billing-service)"
    ]
