"""Business Central change notifications per company: how its changes reach the hub.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_companies") as batch:
        batch.add_column(sa.Column("notification_state", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("notification_json", sa.Text(), nullable=True))
        batch.add_column(sa.Column("notification_checked_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_change_notice_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateway_companies") as batch:
        batch.drop_column("last_change_notice_at")
        batch.drop_column("notification_checked_at")
        batch.drop_column("notification_json")
        batch.drop_column("notification_state")
