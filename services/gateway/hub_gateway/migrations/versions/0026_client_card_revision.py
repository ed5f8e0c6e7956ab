"""The registry's count of each client card's saves, which a save checked against the card
read (If-Match) asks the registry to hold it to.

Revision ID: 0026
Revises: 0025
"""

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_clients") as batch:
        batch.add_column(sa.Column("card_revision", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("gateway_clients") as batch:
        batch.drop_column("card_revision")
