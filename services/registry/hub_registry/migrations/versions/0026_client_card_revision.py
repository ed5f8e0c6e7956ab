"""Each client card counts its saves, so a save made on a card someone saved since is
refused instead of undoing their change.

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
    with op.batch_alter_table("registry_clients") as batch:
        batch.add_column(sa.Column("card_revision", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("registry_clients") as batch:
        batch.drop_column("card_revision")
