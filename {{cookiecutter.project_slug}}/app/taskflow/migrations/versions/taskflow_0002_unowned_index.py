"""An index of the waiting tasks no instance owns, probed by every instance's control loop.

Revision: taskflow_0002
Follows: taskflow_0001

Tasks released at a shutdown (and those enqueued while no instance ran) wait with no owner; a
live instance claims them at its next tick through this partial index, which holds only them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "taskflow_0002"
down_revision = "taskflow_0001"
branch_labels = None
depends_on = None

UNOWNED_PENDING = "status = 'pending' AND owner IS NULL"


def upgrade() -> None:
    op.create_index(
        "ix_taskflow_tasks_unowned",
        "taskflow_tasks",
        ["created_at"],
        unique=False,
        sqlite_where=sa.text(UNOWNED_PENDING),
        postgresql_where=sa.text(UNOWNED_PENDING),
    )


def downgrade() -> None:
    op.drop_index("ix_taskflow_tasks_unowned", table_name="taskflow_tasks")
