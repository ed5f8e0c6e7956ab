"""The newest card revision whose refresh named each company: a card's move drops the
companies only the place it named before holds.

Revision ID: 0025
Revises: 0024
"""

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_companies") as batch:
        batch.add_column(sa.Column("place_revision", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("gateway_companies") as batch:
        batch.drop_column("place_revision")
