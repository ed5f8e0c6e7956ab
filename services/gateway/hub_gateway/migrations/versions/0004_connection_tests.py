"""Answers to Test Client URL.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_connection_tests",
        sa.Column("test_id", sa.Uuid(), primary_key=True),
        sa.Column("firm_id", sa.Uuid(), nullable=False, index=True),
        sa.Column("client_id", sa.Uuid(), nullable=True),
        sa.Column("result_json", sa.Text(), nullable=True),
        sa.Column("tested_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("gateway_connection_tests")
