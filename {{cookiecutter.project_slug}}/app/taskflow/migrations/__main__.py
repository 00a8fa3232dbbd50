"""taskflow's migrations from the command line.

    python -m app.taskflow.migrations revision -m "add tenant to tasks"
    python -m app.taskflow.migrations upgrade [DATABASE_URL]
    python -m app.taskflow.migrations check [DATABASE_URL]

`revision` compares the models with a scratch SQLite database made by the migrations, so it
needs no database of yours, and writes what differs as a new revision in versions/. `upgrade`
and `check` take the URL from the argument or from the DATABASE_URL environment variable.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine

from . import SchemaBehind, alembic_config, check_database, differences, upgrade, upgrade_database


def _database_url(given: str | None) -> str:
    url = given or os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("taskflow: give the database URL as an argument or in DATABASE_URL")
    return url


def write_revision(message: str) -> Path | None:
    """Write the models' changes since the last revision as a new one; None when nothing changed."""
    with tempfile.TemporaryDirectory() as folder:
        engine = create_engine(f"sqlite:///{Path(folder) / 'scratch.db'}")
        try:
            upgrade(engine)
            if not differences(engine):
                return None
            config = alembic_config()
            if importlib.util.find_spec("ruff") is not None:
                # Revisions come out formatted as the rest of the code (`make lint` checks them).
                hooks = {
                    "ruff_fix": "check --fix --exit-zero REVISION_SCRIPT_FILENAME",
                    "ruff_format": "format REVISION_SCRIPT_FILENAME",
                }
                config.set_section_option("post_write_hooks", "hooks", ", ".join(hooks))
                for hook, options in hooks.items():
                    config.set_section_option("post_write_hooks", f"{hook}.type", "module")
                    config.set_section_option("post_write_hooks", f"{hook}.module", "ruff")
                    config.set_section_option("post_write_hooks", f"{hook}.options", options)
            with engine.connect() as connection:
                config.attributes["connection"] = connection
                script = command.revision(config, message=message, autogenerate=True)
        finally:
            engine.dispose()
    assert script is not None and not isinstance(script, list)
    return Path(script.path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.taskflow.migrations", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    revision = commands.add_parser("revision", help="write the models' changes as a new revision")
    revision.add_argument("-m", "--message", required=True, help="what the revision changes")
    for name, text in (("upgrade", "apply pending revisions"), ("check", "fail unless the database is current")):
        commands.add_parser(name, help=text).add_argument("database_url", nargs="?")
    arguments = parser.parse_args(argv)

    if arguments.command == "revision":
        path = write_revision(arguments.message)
        print(f"wrote {path}" if path else "taskflow: the models and the migrations agree; no revision written")
        return 0
    url = _database_url(arguments.database_url)
    try:
        if arguments.command == "upgrade":
            upgrade_database(url)
        else:
            check_database(url)
    except SchemaBehind as error:
        print(error, file=sys.stderr)
        return 1
    print("taskflow: the database is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
