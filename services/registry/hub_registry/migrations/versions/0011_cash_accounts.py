"""A client's own cash accounts (overriding the cash rule).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registry_clients") as batch:
        batch.add_column(sa.Column("cash_account_numbers", sa.String(4000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("registry_clients") as batch:
        batch.drop_column("cash_account_numbers")
