"""An invitation keeps the language its email is written in (the client administrator's).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Invitations raised before languages were mailed in English.
    op.add_column(
        "invitations_invitations", sa.Column("language", sa.String(length=35), nullable=False, server_default="en")
    )


def downgrade() -> None:
    with op.batch_alter_table("invitations_invitations") as table:
        table.drop_column("language")
