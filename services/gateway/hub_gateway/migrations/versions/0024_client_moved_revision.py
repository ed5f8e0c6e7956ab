"""The card revision at which a client last moved to another tenant or environment.

Revision ID: 0024
Revises: 0023
"""

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_clients") as batch:
        batch.add_column(sa.Column("moved_revision", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("gateway_clients") as batch:
        batch.drop_column("moved_revision")
