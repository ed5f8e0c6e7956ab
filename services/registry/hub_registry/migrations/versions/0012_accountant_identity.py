"""An accountant's Entra identity (tenant and object ids), bound at their first Entra
sign-in; accounts from before are bound at their next one.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registry_accountants") as batch:
        batch.add_column(sa.Column("entra_tenant_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("entra_object_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("registry_accountants") as batch:
        batch.drop_column("entra_object_id")
        batch.drop_column("entra_tenant_id")
