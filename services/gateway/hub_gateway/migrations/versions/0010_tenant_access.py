"""Tenant access grants in the read model, each client's tenant id, and firms' names.

Revision ID: 0010
Revises: 0009

Both fill from TenantAccessGranted/Revoked and the connections' tenant ids as events
arrive; a database upgraded in place learns a client's tenant id from its next
ClientUpdated, or at once with `hub rebuild`.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_firms",
        sa.Column("firm_id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(250), nullable=False),
        sa.Column("events_sequence", sa.Integer(), nullable=False, server_default="0"),
    )
    with op.batch_alter_table("gateway_clients") as batch:
        batch.add_column(sa.Column("tenant_id", sa.Uuid(), nullable=True))
    op.create_table(
        "gateway_tenant_access",
        sa.Column("firm_id", sa.Uuid(), primary_key=True),
        sa.Column("tenant_id", sa.Uuid(), primary_key=True),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("method", sa.String(20), nullable=True),
        sa.Column("granted_by", sa.String(320), nullable=True),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("events_sequence", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("gateway_firms")
    op.drop_table("gateway_tenant_access")
    with op.batch_alter_table("gateway_clients") as batch:
        batch.drop_column("tenant_id")
