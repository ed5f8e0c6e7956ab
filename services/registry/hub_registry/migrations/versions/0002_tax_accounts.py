"""A client's own tax payable accounts (overriding the taxes-due rule).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registry_clients") as batch:
        batch.add_column(sa.Column("tax_account_numbers", sa.String(4000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("registry_clients") as batch:
        batch.drop_column("tax_account_numbers")
