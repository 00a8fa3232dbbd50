"""`python -m app.taskflow` finds the service's own task manager and settings by default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[1]


def test_the_command_line_uses_the_services_settings_and_tasks(tmp_path: Path) -> None:
    database = tmp_path / "cli.db"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "PYTHONPATH": str(SERVICE)}
    env.pop("TASKFLOW_MANAGER", None)
    result = subprocess.run(
        [sys.executable, "-m", "app.taskflow", "stats", "--json"],
        cwd=SERVICE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["total"] == 0
    assert database.exists(), "the command line opened the database DATABASE_URL names"
