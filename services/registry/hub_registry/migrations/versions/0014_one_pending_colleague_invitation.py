"""One pending colleague invitation per firm and address. Two replicas inviting the same
address at once each inserted one (both mailed, and every later invitation of the address
failed on the second row); duplicates made so are resolved here, the newest kept, as a
first sign-in already chose it. Addresses are stored lower-cased (normalize_work_email on
every invitation since 0003), so the index compares them as stored.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

PENDING = sa.text("accepted_at IS NULL")


def upgrade() -> None:
    op.execute(
        "DELETE FROM registry_colleague_invitations WHERE accepted_at IS NULL AND EXISTS ("
        " SELECT 1 FROM registry_colleague_invitations AS newer"
        " WHERE newer.firm_id = registry_colleague_invitations.firm_id"
        " AND newer.email = registry_colleague_invitations.email AND newer.accepted_at IS NULL"
        " AND (newer.created_at > registry_colleague_invitations.created_at"
        " OR (newer.created_at = registry_colleague_invitations.created_at"
        " AND newer.id > registry_colleague_invitations.id)))"
    )
    op.create_index(
        "registry_colleague_invitations_pending",
        "registry_colleague_invitations",
        ["firm_id", "email"],
        unique=True,
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("registry_colleague_invitations_pending", table_name="registry_colleague_invitations")
