"""Which revision of its client card's account numbers a company's figures were made with.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_companies") as batch:
        batch.add_column(sa.Column("accounts_revision", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("gateway_companies") as batch:
        batch.drop_column("accounts_revision")
