"""The refresh asked for by hand of each client and company, until its outcome: asking
again while it waits answers with it instead of queueing another.

Revision ID: 0023
Revises: 0022
"""

import sqlalchemy as sa
from alembic import op

from hub_common.db import UtcDateTime

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_manual_refreshes",
        sa.Column("client_id", sa.Uuid(), sa.ForeignKey("registry_clients.id"), primary_key=True),
        sa.Column("scope", sa.String(length=36), primary_key=True),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("requested_at", UtcDateTime(), nullable=False),
        sa.Column("awaiting_refresh_id", sa.Uuid(), nullable=True),
        sa.Column("accounts_revision", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index("ix_registry_manual_refreshes_firm_id", "registry_manual_refreshes", ["firm_id"])


def downgrade() -> None:
    op.drop_index("ix_registry_manual_refreshes_firm_id", table_name="registry_manual_refreshes")
    op.drop_table("registry_manual_refreshes")
