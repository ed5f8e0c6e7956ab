"""Alert mail kept until sent: the composed message, its attempts and last error, so the
mail loop retries what SMTP did not take (the event is acknowledged, not redelivered).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invitations_alert_mails") as batch:
        batch.add_column(sa.Column("message", sa.Text(), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_error", sa.String(length=500), nullable=True))
    op.create_index("ix_invitations_alert_mails_sent_at", "invitations_alert_mails", ["sent_at"])


def downgrade() -> None:
    op.drop_index("ix_invitations_alert_mails_sent_at", "invitations_alert_mails")
    with op.batch_alter_table("invitations_alert_mails") as batch:
        batch.drop_column("last_error")
        batch.drop_column("attempts")
        batch.drop_column("message")
