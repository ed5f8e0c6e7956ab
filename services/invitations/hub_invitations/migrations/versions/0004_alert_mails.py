"""Alert mail sent, by event id: exactly one mail per alert episode and per digest.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from hub_common.db import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invitations_alert_mails",
        sa.Column("event_id", sa.Uuid(), primary_key=True),
        sa.Column("claimed_until", UtcDateTime(), nullable=True),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("invitations_alert_mails")
