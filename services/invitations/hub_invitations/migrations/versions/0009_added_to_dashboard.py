"""Whether an acceptance also put the client on the dashboard, so the same accountant using
the link again is told what their acceptance did.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invitations_invitations") as batch:
        batch.add_column(sa.Column("added_to_dashboard", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invitations_invitations") as batch:
        batch.drop_column("added_to_dashboard")
