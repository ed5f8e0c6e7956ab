"""A client row keeps when the newest list of all its companies was read, so a snapshot of a
company gone from BC, read before that list and applied after it, does not bring the company
back. Existing rows start without it (as before, until the client's next discovery).

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_clients") as batch:
        batch.add_column(sa.Column("companies_listed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateway_clients") as batch:
        batch.drop_column("companies_listed_at")
