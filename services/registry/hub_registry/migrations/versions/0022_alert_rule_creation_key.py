"""The Idempotency-Key a new alert rule was saved under, and a digest of what it asked for:
the same key asked again answers the same rule instead of making a second one.

Revision ID: 0022
Revises: 0021
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registry_alert_rules") as batch:
        batch.add_column(sa.Column("creation_key", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("creation_fingerprint", sa.String(length=64), nullable=True))
        batch.create_index(
            "registry_alert_rules_creation_key", ["firm_id", "owner_accountant_id", "creation_key"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("registry_alert_rules") as batch:
        batch.drop_index("registry_alert_rules_creation_key")
        batch.drop_column("creation_fingerprint")
        batch.drop_column("creation_key")
