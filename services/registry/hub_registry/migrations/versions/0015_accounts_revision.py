"""Each client's count of changes to its card's account numbers (the refreshes carry it, so
figures made with numbers the card no longer names never replace newer ones), and the count
the alerts last evaluated per company.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registry_clients") as batch:
        batch.add_column(sa.Column("accounts_revision", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("registry_alert_positions") as batch:
        batch.add_column(sa.Column("accounts_revision", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("registry_alert_positions") as batch:
        batch.drop_column("accounts_revision")
    with op.batch_alter_table("registry_clients") as batch:
        batch.drop_column("accounts_revision")
