"""When an owner or admin withdrew a colleague invitation (NULL: not withdrawn). A withdrawn
invitation stays as a row (its mail still counts against the daily allowances), so the one
pending invitation per firm and address is now one neither accepted nor withdrawn.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

from hub_common.db import UtcDateTime

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

INDEX = "registry_colleague_invitations_pending"
TABLE = "registry_colleague_invitations"


def upgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.add_column(sa.Column("withdrawn_at", UtcDateTime(), nullable=True))
    op.drop_index(INDEX, table_name=TABLE)
    pending = sa.text("accepted_at IS NULL AND withdrawn_at IS NULL")
    op.create_index(INDEX, TABLE, ["firm_id", "email"], unique=True, sqlite_where=pending, postgresql_where=pending)


def downgrade() -> None:
    # Withdrawn invitations would count as pending again: they become accepted-never rows
    # no sign-in may use, so mark them accepted (at their withdrawal) before the column goes.
    op.execute("UPDATE registry_colleague_invitations SET accepted_at = withdrawn_at WHERE withdrawn_at IS NOT NULL")
    op.drop_index(INDEX, table_name=TABLE)
    pending = sa.text("accepted_at IS NULL")
    op.create_index(INDEX, TABLE, ["firm_id", "email"], unique=True, sqlite_where=pending, postgresql_where=pending)
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_column("withdrawn_at")
