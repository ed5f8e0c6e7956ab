"""Alert mails become the mail of any event (a colleague's invitation too): the table
invitations_alert_mails is renamed invitations_event_mails, rows kept.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_invitations_alert_mails_sent_at", "invitations_alert_mails")
    op.rename_table("invitations_alert_mails", "invitations_event_mails")
    op.create_index("ix_invitations_event_mails_sent_at", "invitations_event_mails", ["sent_at"])


def downgrade() -> None:
    op.drop_index("ix_invitations_event_mails_sent_at", "invitations_event_mails")
    op.rename_table("invitations_event_mails", "invitations_alert_mails")
    op.create_index("ix_invitations_alert_mails_sent_at", "invitations_alert_mails", ["sent_at"])
