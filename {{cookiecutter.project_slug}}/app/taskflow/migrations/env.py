"""Alembic's entry point for taskflow's history; the options live in the package (__init__.py)."""

from typing import cast

from alembic import context
from alembic.runtime.environment import EnvironmentContext

from app.taskflow.migrations import configure

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit(
        "taskflow's migrations run through `python -m app.taskflow.migrations` (or the service's "
        "`make migrate`), which hand them a connection; plain `alembic` runs the service's own history"
    )
# `alembic.context` is a module that stands in for the running EnvironmentContext.
configure(cast(EnvironmentContext, context), connection)
with context.begin_transaction():
    context.run_migrations()
