"""Task priorities: a `priority` column, and the unowned index in claim order.

Revision: taskflow_0005
Follows: taskflow_0004

Existing rows get priority 0 (the default). The partial index of waiting ownerless rows is
rebuilt on (priority DESC, created_at): a claim takes the highest priority first and, within
one, the oldest, reading the front of the index.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "taskflow_0005"
down_revision = "taskflow_0004"
branch_labels = None
depends_on = None

UNOWNED_PENDING = "status = 'pending' AND owner IS NULL"
UNOWNED_INDEX = "ix_taskflow_tasks_unowned"


def upgrade() -> None:
    # The server default fills existing rows; new rows always carry their priority.
    op.add_column("taskflow_tasks", sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
    op.drop_index(UNOWNED_INDEX, table_name="taskflow_tasks")
    op.create_index(
        UNOWNED_INDEX,
        "taskflow_tasks",
        [sa.text("priority DESC"), "created_at"],
        unique=False,
        sqlite_where=sa.text(UNOWNED_PENDING),
        postgresql_where=sa.text(UNOWNED_PENDING),
    )


def downgrade() -> None:
    op.drop_index(UNOWNED_INDEX, table_name="taskflow_tasks")
    op.create_index(
        UNOWNED_INDEX,
        "taskflow_tasks",
        ["created_at"],
        unique=False,
        sqlite_where=sa.text(UNOWNED_PENDING),
        postgresql_where=sa.text(UNOWNED_PENDING),
    )
    op.drop_column("taskflow_tasks", "priority")
