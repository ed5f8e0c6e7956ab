"""The scheduled refresh of each client still awaiting its first outcome: a client whose
last scheduled refresh has not reached its Business Central is not asked again.

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registry_client_schedule_runs") as batch:
        batch.add_column(sa.Column("awaiting_refresh_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("registry_client_schedule_runs") as batch:
        batch.drop_column("awaiting_refresh_id")
