"""How many refused acceptances of an invitation were recorded in the current hour's window
(at most a few an hour go to the audit log).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from hub_common.db import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invitations_recorded_rejections",
        sa.Column("invitation_id", sa.Uuid(), sa.ForeignKey("invitations_invitations.id"), primary_key=True),
        sa.Column("window_start", UtcDateTime(), nullable=False),
        sa.Column("in_window", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("invitations_recorded_rejections")
