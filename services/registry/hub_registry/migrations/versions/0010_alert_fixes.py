"""Alerts: episodes awaiting their daily digest are flagged (no longer a time window that
an episode committed late could fall out of), and failure rows that could count from a past
failure are dropped.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "registry_alert_episodes",
        sa.Column("digest_pending", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    # What the next digest would have listed under the old time window.
    op.execute(
        """
        UPDATE registry_alert_episodes SET digest_pending = true
        WHERE EXISTS (
            SELECT 1 FROM registry_alert_rules r
            WHERE r.id = registry_alert_episodes.rule_id
              AND r.removed_at IS NULL AND r.email = true AND r.delivery = 'daily_digest'
              AND registry_alert_episodes.started_at > r.last_digest_at
        )
        """
    )
    # A failure row of a client no "failing for more than" rule watches was never cleared by
    # a later success: a rule added later would count from it.
    op.execute(
        """
        DELETE FROM registry_alert_failures
        WHERE NOT EXISTS (
            SELECT 1 FROM registry_alert_rules r
            WHERE r.firm_id = registry_alert_failures.firm_id
              AND r.removed_at IS NULL AND r.figure = 'failing_hours'
              AND (r.client_id IS NULL OR r.client_id = registry_alert_failures.client_id)
        )
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("registry_alert_episodes") as batch:
        batch.drop_column("digest_pending")
