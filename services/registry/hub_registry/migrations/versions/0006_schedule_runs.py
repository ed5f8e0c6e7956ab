"""When each schedule last ran, so a replica taking the lease over goes on from there.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from hub_common.db import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_schedule_runs",
        sa.Column("name", sa.String(length=50), primary_key=True),
        sa.Column("last_run_at", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("registry_schedule_runs")
