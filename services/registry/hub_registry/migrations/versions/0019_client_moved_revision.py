"""The card revision at which each client last moved to another tenant or environment: a
refresh's outcome of an older revision read the place the card named before.

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registry_clients") as batch:
        batch.add_column(sa.Column("moved_revision", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("registry_clients") as batch:
        batch.drop_column("moved_revision")
