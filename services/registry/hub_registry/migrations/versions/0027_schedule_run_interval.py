"""Each client's last scheduled run keeps the interval it was asked under, so a changed
interval (which places the client's slots anew) does not make it due again minutes later.

Revision ID: 0027
Revises: 0026
"""

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registry_client_schedule_runs") as batch:
        batch.add_column(sa.Column("every_seconds", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("registry_client_schedule_runs") as batch:
        batch.drop_column("every_seconds")
