"""Concurrency limits: a `concurrency_key` column.

Revision: taskflow_0006
Follows: taskflow_0005

Nullable, no index: the claim counts a limited task's RUNNING rows (few) through the status
index and reads its pending rows off the unowned index, so tasks without limits write nothing more.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "taskflow_0006"
down_revision = "taskflow_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("taskflow_tasks", sa.Column("concurrency_key", sa.String(length=200), nullable=True))


def downgrade() -> None:
    op.drop_column("taskflow_tasks", "concurrency_key")
