"""The generated service carries its licence, a pre-commit config and pytest's skip reasons."""

from __future__ import annotations

import subprocess
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from hooks.answer_rules import CHOICES
from tests.conftest import Bake

# A line only the chosen licence's text has, and the copyright line it must carry.
LICENSE_TEXTS = {
    "MIT": ("MIT License", "Copyright (c) {year} {author}"),
    "Apache-2.0": ("Version 2.0, January 2004", "Copyright {year} {author}"),
    "BSD-3-Clause": ("BSD 3-Clause License", "Copyright (c) {year}, {author}"),
    "Proprietary": ("proprietary and confidential", "Copyright (c) {year} {author}. All rights reserved."),
}


@pytest.mark.parametrize("license", CHOICES["license"])
def test_license_file_holds_the_chosen_licence_with_author_and_year(
    bake_into: Bake, tmp_path: Path, license: str
) -> None:
    project = bake_into(tmp_path, license=license, author_name="Ada Lovelace")
    text = (project / "LICENSE").read_text(encoding="utf-8")
    marker, copyright_line = LICENSE_TEXTS[license]
    assert marker in text
    year = datetime.now(UTC).year
    assert copyright_line.format(year=year, author="Ada Lovelace") in text
    others = [other_marker for name, (other_marker, _) in LICENSE_TEXTS.items() if name != license]
    assert not any(other in text for other in others), "another licence's text was kept"
    assert not (project / "licenses").exists(), "the unchosen licence texts were not pruned"


def test_pre_commit_runs_the_projects_own_ruff_check_format_and_mypy(bake_into: Bake, tmp_path: Path) -> None:
    project = bake_into(tmp_path)
    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    entries = [hook["entry"] for repo in config["repos"] for hook in repo["hooks"]]
    assert any(entry.startswith(".venv/bin/ruff check") for entry in entries), entries
    assert any(entry.startswith(".venv/bin/ruff format") for entry in entries), entries
    assert ".venv/bin/mypy" in entries, entries
    # The same ruff and mypy that `make test` runs, so the hook and CI never disagree.
    lint = subprocess.run(["make", "-n", "lint"], cwd=project, capture_output=True, text=True, check=True)
    assert ".venv/bin/ruff check ." in lint.stdout.splitlines()
    typecheck = subprocess.run(["make", "-n", "typecheck"], cwd=project, capture_output=True, text=True, check=True)
    assert ".venv/bin/mypy" in typecheck.stdout.splitlines()


def test_pytest_reports_why_each_test_skipped(bake_into: Bake, tmp_path: Path) -> None:
    project = bake_into(tmp_path)
    pytest_options = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]
    assert "-ra" in pytest_options["ini_options"]["addopts"]
