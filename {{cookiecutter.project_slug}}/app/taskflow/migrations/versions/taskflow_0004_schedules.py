"""The periodic schedules' table: one row per schedule, with the next due time any instance fires.

Revision: taskflow_0004
Follows: taskflow_0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "taskflow_0004"
down_revision = "taskflow_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "taskflow_schedules",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("expression", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_task_id", sa.String(length=36), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("taskflow_schedules")
