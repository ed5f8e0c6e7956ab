"""The invitation acceptances the registry has acted on: a redelivered InvitationAccepted
does nothing, instead of adding back a card removed since.

Revision ID: 0024
Revises: 0023
"""

import sqlalchemy as sa
from alembic import op

from hub_common.db import UtcDateTime

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_accepted_invitations",
        sa.Column("invitation_id", sa.Uuid(), primary_key=True),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("acted_at", UtcDateTime(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=True),
    )
    op.create_index("ix_registry_accepted_invitations_firm_id", "registry_accepted_invitations", ["firm_id"])


def downgrade() -> None:
    op.drop_index("ix_registry_accepted_invitations_firm_id", table_name="registry_accepted_invitations")
    op.drop_table("registry_accepted_invitations")
