"""A refresh keeps the state its outcome gave a client not known yet, so that a first
refresh's outcome projected before its ClientAdded (by another gateway replica) is not lost.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_refreshes") as batch:
        batch.add_column(sa.Column("client_state", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("client_failure_json", sa.Text(), nullable=True))
        batch.add_column(sa.Column("client_next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("client_state_sequence", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("gateway_refreshes") as batch:
        for column in ("client_state_sequence", "client_next_attempt_at", "client_failure_json", "client_state"):
            batch.drop_column(column)
