"""The change-notice refresh of each company still awaiting its outcome: notices of a
company whose last refresh is unanswered wait for it instead of asking again.

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registry_company_change_refreshes") as batch:
        batch.add_column(sa.Column("awaiting_refresh_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("registry_company_change_refreshes") as batch:
        batch.drop_column("awaiting_refresh_id")
