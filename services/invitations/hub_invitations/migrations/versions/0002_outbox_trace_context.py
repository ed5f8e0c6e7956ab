"""The outbox keeps the trace context each event was appended in (hub_common.outbox).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("invitations_outbox", sa.Column("trace_context", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invitations_outbox") as table:
        table.drop_column("trace_context")
