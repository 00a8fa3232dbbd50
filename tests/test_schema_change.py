"""Schema changes as a team makes them, in a bake of its own.

A column added to a taskflow model: the baked suite refuses it until its migration is written;
one command writes it; a database at the earlier revision then stops a start that may not
migrate with one line naming `make migrate`, and `make migrate` brings it up to date. A table of
the team's own goes the same way through the service's Alembic history.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import Bake

# Settings that would point the baked commands elsewhere than this test's own files.
LEAKY_VARIABLES = {"DATABASE_URL", "REDIS_URL", "TEST_DATABASE_URL", "PYTEST_ADDOPTS", "PYTHONPATH"}
RETRY_OF = "    retry_of: str | None = Field(default=None, max_length=36)\n"
TENANT = "    tenant: str | None = Field(default=None, max_length=100)\n"
WIDGETS = '''"""A table of the team's own."""

from sqlmodel import Field, SQLModel


class Widget(SQLModel, table=True):
    __tablename__ = "widgets"

    id: int | None = Field(default=None, primary_key=True)
    label: str = Field(max_length=80)
'''


def run(project: Path, *arguments: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {name: value for name, value in os.environ.items() if name not in LEAKY_VARIABLES}
    environment |= {"PYTHONDONTWRITEBYTECODE": "1", "REDIS_URL": "", **env}
    return subprocess.run(
        [sys.executable, *arguments], cwd=project, env=environment, capture_output=True, text=True, timeout=600
    )


def test_a_schema_change_needs_one_generated_migration_in_the_right_history(bake_into: Bake, tmp_path: Path) -> None:
    project = bake_into(tmp_path / "bake")
    older = f"sqlite:///{tmp_path / 'older.db'}"
    assert run(project, "-m", "app.taskflow.migrations", "upgrade", older).returncode == 0  # before the change

    models = project / "app/taskflow/models.py"
    source = models.read_text(encoding="utf-8")
    assert RETRY_OF in source
    models.write_text(source.replace(RETRY_OF, RETRY_OF + TENANT), encoding="utf-8")
    schema_test = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/taskflow/test_migrations.py", "-k", "sqlite"]

    refused = run(project, *schema_test)
    assert refused.returncode == 1, refused.stdout[-3000:]
    assert 'add a migration: python -m app.taskflow.migrations revision -m "what changed"' in refused.stdout

    written = run(project, "-m", "app.taskflow.migrations", "revision", "-m", "add tenant to tasks")
    assert written.returncode == 0, written.stderr
    [revision] = (project / "app/taskflow/migrations/versions").glob("*_add_tenant_to_tasks.py")
    assert 'add_column(sa.Column("tenant", sa.String(length=100), nullable=True))' in revision.read_text("utf-8")
    lint = run(project, "-m", "ruff", "check", "--no-cache", str(revision))
    assert lint.returncode == 0, lint.stdout

    accepted = run(project, *schema_test)
    assert accepted.returncode == 0, accepted.stdout[-3000:]

    start = ["-m", "uvicorn", "--factory", "app.main:create_app", "--port", "0"]
    stopped = run(project, *start, DATABASE_URL=older, MIGRATE_ON_START="false")
    assert stopped.returncode == 1
    [line] = stopped.stderr.strip().splitlines()
    # The database is at the template's newest revision (taskflow_NNNN), the code one past it.
    assert re.match(r"ERROR: taskflow: the database is at revision taskflow_\d{4}, this code needs \w+", line), line
    assert "run `make migrate`" in line

    assert run(project, "-m", "app.schema", DATABASE_URL=older).returncode == 0  # what `make migrate` runs
    assert run(project, "-m", "app.taskflow.migrations", "check", older).returncode == 0

    # A table of the team's own: the service's history, beside taskflow's.
    (project / "app/widgets.py").write_text(WIDGETS, encoding="utf-8")
    with (project / "app/main.py").open("a", encoding="utf-8") as main:
        main.write("\nimport app.widgets  # noqa: E402, F401\n")
    generated = run(project, "-m", "alembic", "revision", "--autogenerate", "-m", "add widgets", DATABASE_URL=older)
    assert generated.returncode == 0, generated.stderr
    [widgets] = (project / "migrations/versions").glob("*_add_widgets.py")
    assert '"widgets"' in widgets.read_text("utf-8")
    assert "taskflow_" not in widgets.read_text("utf-8")

    stopped = run(project, *start, DATABASE_URL=older, MIGRATE_ON_START="false")
    assert stopped.returncode == 1
    [line] = stopped.stderr.strip().splitlines()
    assert line.startswith("ERROR: the service's tables are at no revision, this code needs ")
    assert "run `make migrate`" in line
    assert run(project, "-m", "app.schema", DATABASE_URL=older).returncode == 0
    assert run(project, "-m", "alembic", "check", DATABASE_URL=older).returncode == 0
