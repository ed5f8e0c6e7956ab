"""Refresh schedules: a firm's, and a client's own, as the registry last set them.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("gateway_firms", "gateway_clients"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("refresh_schedule_json", sa.Text(), nullable=True))


def downgrade() -> None:
    for table in ("gateway_firms", "gateway_clients"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("refresh_schedule_json")
