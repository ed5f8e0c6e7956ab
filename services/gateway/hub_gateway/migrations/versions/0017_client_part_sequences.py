"""Each part of a client row keeps the sequence of its own last event (schedule, state,
companies found), and a refresh the sequence of its request, so gateway replicas projecting
one stream out of order lose no event. Existing rows start from the sequence they kept.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

PARTS = ("schedule_sequence", "state_sequence", "discovery_sequence")


def upgrade() -> None:
    with op.batch_alter_table("gateway_clients") as batch:
        for part in PARTS:
            batch.add_column(sa.Column(part, sa.BigInteger(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE gateway_clients SET schedule_sequence = events_sequence, state_sequence = events_sequence,"
        " discovery_sequence = events_sequence"
    )
    # Every refresh recorded so far was recorded by its request (or began with a ClientAdded).
    with op.batch_alter_table("gateway_refreshes") as batch:
        batch.add_column(sa.Column("request_sequence", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute("UPDATE gateway_refreshes SET request_sequence = 1")


def downgrade() -> None:
    with op.batch_alter_table("gateway_refreshes") as batch:
        batch.drop_column("request_sequence")
    with op.batch_alter_table("gateway_clients") as batch:
        for part in reversed(PARTS):
            batch.drop_column(part)
