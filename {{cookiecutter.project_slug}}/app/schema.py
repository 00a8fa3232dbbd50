"""The database at the code's schema before the service starts: taskflow's history, then ours.

With MIGRATE_ON_START (the default) the start applies what is pending, once however many
instances start together. Without it, a database behind the code stops the start with one line
that names `make migrate`, the command that applies both histories (`python -m app.schema`).
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from app.config import Settings, get_settings
from app.taskflow.migrations import SchemaBehind, check_database, upgrade_database

# alembic.ini sits at the top of the project, beside app/.
ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"


def alembic_config(database_url: str) -> Config:
    config = Config(str(ALEMBIC_INI))
    config.attributes["database_url"] = database_url  # read by migrations/env.py
    return config


@cache
def _heads() -> frozenset[str]:
    # Read once per process: a test suite starts many apps.
    if not ALEMBIC_INI.exists():
        return frozenset()
    return frozenset(ScriptDirectory.from_config(Config(str(ALEMBIC_INI))).get_heads())


def _current(database_url: str) -> frozenset[str]:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return frozenset(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()


def upgrade(database_url: str) -> None:
    """Apply taskflow's pending migrations, then the service's own."""
    upgrade_database(database_url)
    if _heads() and _current(database_url) != _heads():
        command.upgrade(alembic_config(database_url), "heads")


def check(database_url: str) -> None:
    """Raise SchemaBehind, with one line naming `make migrate`, unless both histories are current."""
    check_database(database_url)
    current = _current(database_url) if _heads() else frozenset()
    if current != _heads():
        at = ", ".join(sorted(current)) or "no revision"
        raise SchemaBehind(
            f"the service's tables are at {at}, this code needs {', '.join(sorted(_heads()))}: "
            "run `make migrate` (or set MIGRATE_ON_START=true)"
        )


def prepare(settings: Settings) -> None:
    """Migrate or check as the settings say; a database behind the code stops the start with one line."""
    try:
        if settings.migrate_on_start:
            upgrade(settings.database_url)
        else:
            check(settings.database_url)
    except SchemaBehind as error:
        raise SystemExit(f"ERROR: {error}") from None


if __name__ == "__main__":
    upgrade(get_settings().database_url)
    print("the database is current: taskflow's migrations and the service's are applied", file=sys.stderr)
