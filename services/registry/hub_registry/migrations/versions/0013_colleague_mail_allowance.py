"""When each colleague invitation was last mailed, and the index that counts a firm's mails
of the last day (its daily allowance). Invitations from before count as mailed when made.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registry_colleague_invitations") as batch:
        batch.add_column(sa.Column("mailed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE registry_colleague_invitations SET mailed_at = created_at")
    with op.batch_alter_table("registry_colleague_invitations") as batch:
        batch.alter_column("mailed_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    op.create_index("registry_colleague_invitations_mailed", "registry_colleague_invitations", ["firm_id", "mailed_at"])


def downgrade() -> None:
    op.drop_index("registry_colleague_invitations_mailed", table_name="registry_colleague_invitations")
    with op.batch_alter_table("registry_colleague_invitations") as batch:
        batch.drop_column("mailed_at")
