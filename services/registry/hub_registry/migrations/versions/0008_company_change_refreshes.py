"""Refreshes asked for by Business Central's change notices, coalesced per company.

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
    op.create_table(
        "registry_company_change_refreshes",
        sa.Column("client_id", sa.Uuid(), sa.ForeignKey("registry_clients.id"), primary_key=True),
        sa.Column("company_id", sa.Uuid(), primary_key=True),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("last_requested_at", UtcDateTime(), nullable=False),
        sa.Column("pending_since", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_registry_company_change_refreshes_firm_id", "registry_company_change_refreshes", ["firm_id"])
    op.create_index(
        "ix_registry_company_change_refreshes_pending_since", "registry_company_change_refreshes", ["pending_since"]
    )


def downgrade() -> None:
    op.drop_index("ix_registry_company_change_refreshes_pending_since", "registry_company_change_refreshes")
    op.drop_index("ix_registry_company_change_refreshes_firm_id", "registry_company_change_refreshes")
    op.drop_table("registry_company_change_refreshes")
