"""Which addresses of a firm must get no more mail of events up to when (a colleague
removed, an invitation withdrawn): such an event handled only after it is not mailed.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

from hub_common.db import UtcDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invitations_mail_drops",
        sa.Column("firm_id", sa.Uuid(), primary_key=True),
        sa.Column("recipient", sa.String(length=320), primary_key=True),
        sa.Column("kind", sa.String(length=20), primary_key=True),
        sa.Column("dropped_before", UtcDateTime(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("invitations_mail_drops")
