"""The Test Client URLs each firm asked for within the hour, counted against its allowance.

Revision ID: 0025
Revises: 0024
"""

import sqlalchemy as sa
from alembic import op

from hub_common.db import UtcDateTime

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_connection_tests",
        sa.Column("test_id", sa.Uuid(), primary_key=True),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("requested_at", UtcDateTime(), nullable=False),
    )
    op.create_index("registry_connection_tests_firm_time", "registry_connection_tests", ["firm_id", "requested_at"])


def downgrade() -> None:
    op.drop_index("registry_connection_tests_firm_time", table_name="registry_connection_tests")
    op.drop_table("registry_connection_tests")
