"""Alembic's entry point for the service's own tables.

Every table of the app's SQLModel models is compared, except taskflow's (all named taskflow_*),
whose history lives in app/taskflow/migrations/ with a version table of its own. A migration
runs in one transaction that no other instance's migration runs beside: PostgreSQL takes an
advisory lock, SQLite begins with BEGIN IMMEDIATE (the database's write lock).
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel, create_engine

# The app imports every module that defines a table, so SQLModel's metadata holds them all.
import app.main  # noqa: F401
from app.config import get_settings
from app.taskflow.migrations import render_item

# pg_advisory_xact_lock's key: the first eight bytes of "service!" (taskflow's history has its own).
LOCK_KEY = int.from_bytes(b"service!", "big") & 0x7FFF_FFFF_FFFF_FFFF


def include_object(_object: Any, name: str | None, kind: str, _reflected: bool, _compare_to: Any) -> bool:
    return not (kind == "table" and name is not None and name.startswith("taskflow_"))


def database_url() -> str:
    # app/schema.py passes the URL it migrates; the command line uses the service's settings.
    return context.config.attributes.get("database_url") or get_settings().database_url


def locking_engine(url: str) -> Engine:
    engine = create_engine(url, poolclass=NullPool)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # SQLAlchemy's BEGIN below, not the driver's

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


options: dict[str, Any] = {
    "target_metadata": SQLModel.metadata,
    "include_object": include_object,
    "render_item": render_item,
    "render_as_batch": True,  # SQLite alters a table by copying it
    "compare_type": True,
}

if context.is_offline_mode():
    context.configure(url=database_url(), literal_binds=True, **options)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = locking_engine(database_url())
    try:
        with engine.connect() as connection, connection.begin():
            if engine.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            context.configure(connection=connection, **options)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()
