"""When the event asking for each kept mail happened: a removal or a withdrawal drops only
the mail of events before it.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

from hub_common.db import UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invitations_alert_mails") as batch:
        batch.add_column(sa.Column("event_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invitations_alert_mails") as batch:
        batch.drop_column("event_at")
