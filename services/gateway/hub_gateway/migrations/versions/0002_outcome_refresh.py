"""Which refresh produced each company row's outcome.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_companies") as batch:
        batch.add_column(sa.Column("outcome_refresh_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateway_companies") as batch:
        batch.drop_column("outcome_refresh_id")
