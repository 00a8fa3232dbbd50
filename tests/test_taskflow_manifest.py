"""The vendored taskflow ships with a manifest of its files, and a command that reports edits."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import Bake


def run_manifest(service: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.taskflow.manifest"], cwd=service, capture_output=True, text=True, timeout=60
    )


def test_shipped_manifest_matches_the_vendored_files(bake_into: Bake, tmp_path: Path) -> None:
    result = run_manifest(bake_into(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr + "\nrun: python -m app.taskflow.manifest --write"
    assert "no local changes" in result.stdout


def test_manifest_command_lists_what_a_team_changed(bake_into: Bake, tmp_path: Path) -> None:
    service = bake_into(tmp_path)
    policy = service / "app/taskflow/policy.py"
    policy.write_text(policy.read_text(encoding="utf-8") + "\n# local tweak\n", encoding="utf-8")
    (service / "app/taskflow/extra.py").write_text("X = 1\n", encoding="utf-8")
    shutil.rmtree(service / "app/taskflow/admin/static", ignore_errors=False)
    result = run_manifest(service)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "changed  app/taskflow/policy.py" in lines
    assert "added    app/taskflow/extra.py" in lines
    assert any(line.startswith("removed  app/taskflow/admin/static/") for line in lines)
