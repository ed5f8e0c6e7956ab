"""The read model: positions, accountants, clients, companies.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_positions",
        sa.Column("stream", sa.String(50), primary_key=True),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "gateway_accountants",
        sa.Column("accountant_id", sa.Uuid(), primary_key=True),
        sa.Column("firm_id", sa.Uuid(), nullable=False, index=True),
        sa.Column("email", sa.String(320), nullable=False, index=True),
        sa.Column("display_name", sa.String(250), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("events_sequence", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "gateway_clients",
        sa.Column("client_id", sa.Uuid(), primary_key=True),
        sa.Column("firm_id", sa.Uuid(), nullable=False, index=True),
        sa.Column("name", sa.String(250), nullable=False),
        sa.Column("client_url", sa.String(2000), nullable=False),
        sa.Column("tenant", sa.String(253), nullable=False),
        sa.Column("environment", sa.String(100), nullable=False),
        sa.Column("company_name", sa.String(250), nullable=True),
        sa.Column("card_json", sa.Text(), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("removed", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("failure_json", sa.Text(), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("events_sequence", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "gateway_companies",
        sa.Column("client_id", sa.Uuid(), primary_key=True),
        sa.Column("company_id", sa.Uuid(), primary_key=True),
        sa.Column("firm_id", sa.Uuid(), nullable=False, index=True),
        sa.Column("company_name", sa.String(250), nullable=False),
        sa.Column("display_name", sa.String(500), nullable=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=True),
        sa.Column("currency_code", sa.String(10), nullable=True),
        sa.Column("cash_total", sa.Numeric(28, 2), nullable=True),
        sa.Column("figures_json", sa.Text(), nullable=True),
        sa.Column("web_client_link", sa.String(2000), nullable=True),
        sa.Column("failure_json", sa.Text(), nullable=True),
        sa.Column("events_sequence", sa.BigInteger(), nullable=False),
        sa.Column("snapshot_sequence", sa.BigInteger(), nullable=False),
        sa.Column("snapshot_applied_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("gateway_companies")
    op.drop_table("gateway_clients")
    op.drop_table("gateway_accountants")
    op.drop_table("gateway_positions")
