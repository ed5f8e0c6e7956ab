"""Alert episodes in the read model (AlertRaised, AlertResolved).

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_alerts",
        sa.Column("episode_id", sa.Uuid(), primary_key=True),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("rule_id", sa.Uuid(), nullable=True),
        sa.Column("rule_name", sa.String(250), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("client_name", sa.String(250), nullable=False),
        sa.Column("company_id", sa.Uuid(), nullable=True),
        sa.Column("company_name", sa.String(500), nullable=True),
        sa.Column("figure", sa.String(40), nullable=False),
        sa.Column("comparison", sa.String(10), nullable=False),
        sa.Column("threshold", sa.String(60), nullable=False),
        sa.Column("value", sa.String(60), nullable=False),
        sa.Column("currency_code", sa.String(10), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(30), nullable=True),
        sa.Column("events_sequence", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index("ix_gateway_alerts_firm_started", "gateway_alerts", ["firm_id", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_gateway_alerts_firm_started", "gateway_alerts")
    op.drop_table("gateway_alerts")
