"""When an owner or admin removed an accountant from the firm (NULL: a member).

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

from hub_common.db import UtcDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registry_accountants") as batch:
        batch.add_column(sa.Column("removed_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("registry_accountants") as batch:
        batch.drop_column("removed_at")
