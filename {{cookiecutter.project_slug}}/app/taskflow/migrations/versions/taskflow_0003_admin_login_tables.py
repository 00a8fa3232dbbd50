"""The admin's login tables: failed-login counts and sessions ended by logout.

Revision: taskflow_0003
Follows: taskflow_0002

Until 0.2.0 the admin created these tables itself at first use; a database it used already has
them, with these columns and indexes: they are kept (IF NOT EXISTS), and this revision is recorded.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "taskflow_0003"
down_revision = "taskflow_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "taskflow_admin_login_failures",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_taskflow_admin_login_failures_window_start",
        "taskflow_admin_login_failures",
        ["window_start"],
        if_not_exists=True,
    )
    op.create_table(
        "taskflow_admin_revoked_sessions",
        sa.Column("session_id", sa.String(length=80), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("session_id"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_taskflow_admin_revoked_sessions_expires_at",
        "taskflow_admin_revoked_sessions",
        ["expires_at"],
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_taskflow_admin_revoked_sessions_expires_at", table_name="taskflow_admin_revoked_sessions")
    op.drop_table("taskflow_admin_revoked_sessions")
    op.drop_index("ix_taskflow_admin_login_failures_window_start", table_name="taskflow_admin_login_failures")
    op.drop_table("taskflow_admin_login_failures")
