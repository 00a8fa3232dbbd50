"""taskflow's tables: tasks, attempts and the admin audit.

Revision: taskflow_0001
Follows: none

The template's revisions are named taskflow_NNNN; `python -m app.taskflow.migrations revision`
gives yours random ids, so a template update's next revision never takes the id of one of yours.
A database made before taskflow had migrations (its tables created from the models) already has
these tables and indexes: they are kept (IF NOT EXISTS), and this revision is recorded.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "taskflow_0001"
down_revision = None
branch_labels = None
depends_on = None

# Indexes earlier builds created that no query uses any more (each still cost every write).
RETIRED_INDEXES = ("ix_taskflow_tasks_status_lease",)


def upgrade() -> None:
    op.create_table(
        "taskflow_tasks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.Column("persist", sa.Boolean(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("retries_used", sa.Integer(), nullable=False),
        sa.Column("recoveries", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_type", sa.String(length=200), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("progress_done", sa.Float(), nullable=True),
        sa.Column("progress_total", sa.Float(), nullable=True),
        sa.Column("progress_message", sa.String(length=500), nullable=True),
        sa.Column("retry_of", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index("ix_taskflow_tasks_created", "taskflow_tasks", ["created_at"], if_not_exists=True)
    op.create_index("ix_taskflow_tasks_status_created", "taskflow_tasks", ["status", "created_at"], if_not_exists=True)
    op.create_index("ix_taskflow_tasks_name_created", "taskflow_tasks", ["name", "created_at"], if_not_exists=True)
    op.create_index(
        "ux_taskflow_tasks_idempotency_key",
        "taskflow_tasks",
        ["idempotency_key"],
        unique=True,
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_taskflow_tasks_retry_of",
        "taskflow_tasks",
        ["retry_of"],
        sqlite_where=sa.text("retry_of IS NOT NULL"),
        postgresql_where=sa.text("retry_of IS NOT NULL"),
        if_not_exists=True,
    )
    for name in RETIRED_INDEXES:
        op.drop_index(name, table_name="taskflow_tasks", if_exists=True)

    op.create_table(
        "taskflow_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("error_type", sa.String(length=200), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("logs", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index("ix_taskflow_attempts_task_id", "taskflow_attempts", ["task_id"], if_not_exists=True)

    op.create_table(
        "taskflow_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index("ix_taskflow_audit_at", "taskflow_audit", ["at"], if_not_exists=True)
    op.create_index("ix_taskflow_audit_task_id", "taskflow_audit", ["task_id"], if_not_exists=True)


def downgrade() -> None:
    op.drop_table("taskflow_audit")
    op.drop_table("taskflow_attempts")
    op.drop_table("taskflow_tasks")
