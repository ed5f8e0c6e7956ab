"""When the client's people withdrew an invitation nobody had accepted (status "withdrawn").

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from hub_common.db import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invitations_invitations") as batch:
        batch.add_column(sa.Column("withdrawn_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invitations_invitations") as batch:
        batch.drop_column("withdrawn_at")
