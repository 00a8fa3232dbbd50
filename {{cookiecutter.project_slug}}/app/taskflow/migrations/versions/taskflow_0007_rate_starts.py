"""Rate limits: the starts of rate-limited tasks in their current window.

Revision: taskflow_0007
Follows: taskflow_0006

One row per start, found by (name, started_at): a claim of a rate-limited task deletes the
starts that left its window, counts the rest, and adds its own. Tasks without a rate limit
never touch it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "taskflow_0007"
down_revision = "taskflow_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "taskflow_rate_starts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_taskflow_rate_starts_name_started", "taskflow_rate_starts", ["name", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_taskflow_rate_starts_name_started", table_name="taskflow_rate_starts")
    op.drop_table("taskflow_rate_starts")
