"""An accountant removed from the firm (NULL: a member), and when last removed: the
gateway refuses their sessions and API tokens.

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_accountants") as batch:
        batch.add_column(sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("access_ended_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateway_accountants") as batch:
        batch.drop_column("access_ended_at")
        batch.drop_column("removed_at")
