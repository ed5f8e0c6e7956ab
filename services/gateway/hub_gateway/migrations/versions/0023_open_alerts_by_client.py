"""The dashboard's alert markers read a firm's open alerts of the clients on a page, on every
live change of every open page: an index of the open ones by firm and client, so a firm's
years of ended alerts are not read each time.

Revision ID: 0023
Revises: 0022
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_gateway_alerts_open_by_client",
        "gateway_alerts",
        ["firm_id", "client_id"],
        sqlite_where=sa.text("ended_at IS NULL"),
        postgresql_where=sa.text("ended_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_gateway_alerts_open_by_client", table_name="gateway_alerts")
