"""Invitations found by tenant, and by tenant and address, over the last day (the hub's
daily allowance).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("invitations_by_tenant", "invitations_invitations", ["tenant", "created_at"])
    op.create_index("invitations_by_address", "invitations_invitations", ["tenant", "email", "created_at"])


def downgrade() -> None:
    op.drop_index("invitations_by_address", table_name="invitations_invitations")
    op.drop_index("invitations_by_tenant", table_name="invitations_invitations")
