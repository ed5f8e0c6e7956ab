"""Whose each event's mail is (firm, address, kind), so a mail kept through an SMTP outage
is dropped when its recipient was removed from the firm, or its invitation withdrawn.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invitations_alert_mails") as batch:
        batch.add_column(sa.Column("firm_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("recipient", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("kind", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invitations_alert_mails") as batch:
        batch.drop_column("kind")
        batch.drop_column("recipient")
        batch.drop_column("firm_id")
