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

# id -> (answers, the one ERROR line expected)
BAD_ANSWERS: dict[str, tuple[dict[str, str], str]] = {
    "slug-with-spaces": ({"project_slug": "My Service"}, "project_slug"),
    "slug-upper-case": ({"project_slug": "MyService"}, "project_slug"),
    "slug-leading-digit": ({"project_slug": "1service"}, "project_slug"),
    "slug-trailing-hyphen": ({"project_slug": "service-"}, "project_slug"),
    "derived-slug-leading-digit": ({"project_name": "1st Service"}, "project_slug"),
    "empty-project-name": ({"project_name": "", "project_slug": "billing"}, "project_name"),
    "empty-project-name-and-derived-slug": ({"project_name": ""}, "project_name"),
    "blank-project-name": ({"project_name": "   ", "project_slug": "billing"}, "project_name"),
    "quote-injection-in-project-name": ({"project_name": INJECTION, "project_slug": "billing"}, "project_name"),
    "quote-injection-in-description": ({"description": INJECTION}, "description"),
    "jinja-expression-in-project-name": ({"project_name": "{{ 7*7 }}"}, "project_name"),
    "jinja-reference-in-author-name": ({"author_name": "{{ cookiecutter.author_email }}"}, "author_name"),
    "jinja-error-in-description": ({"description": "{{ 1/0 }}"}, "description"),
    "jinja-statement-in-project-name": ({"project_name": "{% for x in y %}"}, "project_name"),
    "bad-author-email": ({"author_email": "not-an-email"}, "author_email"),
    "admin-username-with-space": ({"admin_username": "the admin"}, "admin_username"),
    "unknown-database": ({"database": "mysql"}, "database"),
    "unsupported-python": ({"python_version": "3.10"}, "python_version"),
    "unknown-redis-answer": ({"use_redis": "true"}, "use_redis"),
    "unknown-licence": ({"license": "GPL"}, "license"),
}


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("ERROR:")]


def assert_nothing_generated(output_dir: Path, marker: Path) -> None:
    assert not output_dir.exists(), "the failed bake created the output folder"
    assert not marker.exists(), "an answer ran code inside a hook"
    assert not (TEMPLATE_DIR / "PWNED").exists(), "an answer ran code inside a hook"


@pytest.mark.parametrize(("answers", "named"), list(BAD_ANSWERS.values()), ids=list(BAD_ANSWERS))
def test_bad_answer_is_refused_with_one_error_line(
    bake_into: Bake, tmp_path: Path, answers: dict[str, str], named: str
) -> None:
    marker = tmp_path / "PWNED"
    answers = {name: value.replace("{marker}", str(marker)) for name, value in answers.items()}
    output_dir = tmp_path / "out"
    with pytest.raises(CookiecutterException) as refused:
        bake_into(output_dir, **answers)
    assert_nothing_generated(output_dir, marker)
    [line] = error_lines(str(refused.value))
    assert line.startswith(f"ERROR: {named}="), line
    assert "(example: " in line, line


def test_braces_in_an_answer_are_kept_literally_not_evaluated(bake_into: Bake, tmp_path: Path) -> None:
    with pytest.raises(CookiecutterException) as refused:
        bake_into(tmp_path / "out", project_name="{{ 7*7 }}")
    assert str(refused.value).startswith("ERROR: project_name='{{ 7*7 }}' must not contain")
    assert "49" not in str(refused.value)


def test_an_expression_in_an_answer_never_runs(bake_into: Bake, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    expression = "{{ cycler.__init__.__globals__.os.system('touch " + str(marker) + "') }}"
    with pytest.raises(CookiecutterException):
        bake_into(tmp_path / "out", author_name=expression)
    assert not marker.exists(), "an answer was evaluated as Jinja"


def test_the_slug_is_derived_with_a_proper_slugify(bake_into: Bake, tmp_path: Path) -> None:
    project = bake_into(tmp_path, project_name="Café Ünïcode: the Billing Service!")
    assert project.name == "cafe-unicode-the-billing-service"


def test_an_empty_name_into_an_existing_output_folder_names_the_empty_answer(bake_into: Bake, tmp_path: Path) -> None:
    output_dir = tmp_path / "out"
    output_dir.mkdir()
    (output_dir / "keep.txt").write_text("mine\n", encoding="utf-8")
    with pytest.raises(CookiecutterException) as refused:
        bake_into(output_dir, project_name="")
    assert str(refused.value) == "ERROR: project_name='' must not be empty (example: project_name='Billing Service')"
    assert sorted(path.name for path in output_dir.iterdir()) == ["keep.txt"]


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
    # A replay asks nothing, so only the hook checks, after cookiecutter made the output folder.
    assert not output_dir.exists() or list(output_dir.iterdir()) == [], "the failed bake left files behind"
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
    assert result.returncode == 1
    assert sorted(path.name for path in template.iterdir()) == before, "the failed bake generated files"
    # The whole output is one line: no traceback, no notice.
    assert (result.stdout + result.stderr).splitlines() == [
        "ERROR: project_slug='My Service' must be lower case letters, digits and single hyphens, "
        "starting with a letter (example: project_slug=billing-service)"
    ]


@pytest.mark.parametrize("answer", ["database=mysql", "python_version=3.10"])
def test_cli_unknown_choice_prints_one_error_line_and_no_traceback(
    cookiecutter_config: Path, tmp_path: Path, answer: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cookiecutter", str(TEMPLATE_DIR), "--no-input", "--output-dir", "out", answer],
        cwd=tmp_path,
        env={**os.environ, "COOKIECUTTER_CONFIG": str(cookiecutter_config)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    name, value = answer.split("=")
    [line] = (result.stdout + result.stderr).splitlines()
    assert line.startswith(f"ERROR: {name}='{value}' must be one of "), line
    assert not (tmp_path / "out").exists()
