"""Refreshes waiting to retry (RefreshDeferred), and what each refresh's discovery found.

Rows and Check Errors entries get the time of the next attempt; a refresh records how many
of its requested companies were found and whether it failed as a whole, so its progress
completes for a client without companies and for one whose discovery failed.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("gateway_clients", "gateway_companies"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("gateway_failures") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("gateway_refreshes") as batch:
        batch.add_column(sa.Column("companies_found", sa.Integer(), nullable=True))
        # Refreshes recorded before this revision keep counting as they did: not failed.
        batch.add_column(sa.Column("failed", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("gateway_refreshes") as batch:
        batch.drop_column("failed")
        batch.drop_column("companies_found")
    with op.batch_alter_table("gateway_failures") as batch:
        batch.drop_column("next_attempt_at")
        batch.drop_column("attempt")
    for table in ("gateway_clients", "gateway_companies"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("next_attempt_at")
