"""Alert rules, their episodes, what they watch (failures, the last snapshot evaluated) and
their webhook deliveries.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from hub_common.db import UtcDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_alert_rules",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("firm_id", sa.Uuid(), sa.ForeignKey("registry_firms.id"), nullable=False),
        sa.Column("owner_accountant_id", sa.Uuid(), sa.ForeignKey("registry_accountants.id"), nullable=False),
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column("client_id", sa.Uuid(), sa.ForeignKey("registry_clients.id"), nullable=True),
        sa.Column("figure", sa.String(length=40), nullable=False),
        sa.Column("comparison", sa.String(length=10), nullable=False),
        sa.Column("threshold", sa.String(length=60), nullable=False),
        sa.Column("email", sa.Boolean(), nullable=False),
        sa.Column("webhook_url", sa.String(length=2000), nullable=True),
        sa.Column("webhook_secret_sealed", sa.String(length=500), nullable=True),
        sa.Column("delivery", sa.String(length=20), nullable=False),
        sa.Column("digest_at", sa.Time(), nullable=True),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=35), nullable=False),
        sa.Column("last_digest_at", UtcDateTime(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("removed_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_registry_alert_rules_firm_id", "registry_alert_rules", ["firm_id"])
    op.create_table(
        "registry_alert_episodes",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("firm_id", sa.Uuid(), sa.ForeignKey("registry_firms.id"), nullable=False),
        sa.Column("rule_id", sa.Uuid(), sa.ForeignKey("registry_alert_rules.id"), nullable=False),
        sa.Column("client_id", sa.Uuid(), sa.ForeignKey("registry_clients.id"), nullable=False),
        sa.Column("company_key", sa.String(length=40), nullable=False),
        sa.Column("company_name", sa.String(length=500), nullable=True),
        sa.Column("value", sa.String(length=60), nullable=False),
        sa.Column("currency_code", sa.String(length=10), nullable=True),
        sa.Column("raised_event_id", sa.Uuid(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("ended_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_registry_alert_episodes_firm_id", "registry_alert_episodes", ["firm_id"])
    op.create_index("ix_registry_alert_episodes_rule_id", "registry_alert_episodes", ["rule_id"])
    op.create_index("ix_registry_alert_episodes_started_at", "registry_alert_episodes", ["started_at"])
    op.create_index(
        "registry_alert_episodes_open",
        "registry_alert_episodes",
        ["rule_id", "client_id", "company_key"],
        unique=True,
        sqlite_where=sa.text("ended_at IS NULL"),
        postgresql_where=sa.text("ended_at IS NULL"),
    )
    op.create_table(
        "registry_alert_failures",
        sa.Column("client_id", sa.Uuid(), sa.ForeignKey("registry_clients.id"), primary_key=True),
        sa.Column("company_key", sa.String(length=40), primary_key=True),
        sa.Column("firm_id", sa.Uuid(), sa.ForeignKey("registry_firms.id"), nullable=False),
        sa.Column("company_name", sa.String(length=500), nullable=True),
        sa.Column("failing_since", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_registry_alert_failures_firm_id", "registry_alert_failures", ["firm_id"])
    op.create_table(
        "registry_alert_positions",
        sa.Column("client_id", sa.Uuid(), primary_key=True),
        sa.Column("company_id", sa.Uuid(), primary_key=True),
        sa.Column("read_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "registry_alert_webhook_deliveries",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("firm_id", sa.Uuid(), sa.ForeignKey("registry_firms.id"), nullable=False),
        sa.Column("rule_id", sa.Uuid(), sa.ForeignKey("registry_alert_rules.id"), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("body", sa.String(length=20000), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
        sa.Column("claimed_until", UtcDateTime(), nullable=True),
        sa.Column("delivered_at", UtcDateTime(), nullable=True),
        sa.Column("failed_at", UtcDateTime(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
    )
    op.create_index(
        "ix_registry_alert_webhook_deliveries_next_attempt_at", "registry_alert_webhook_deliveries", ["next_attempt_at"]
    )
    op.create_index(
        "ix_registry_alert_webhook_deliveries_delivered_at", "registry_alert_webhook_deliveries", ["delivered_at"]
    )


def downgrade() -> None:
    op.drop_table("registry_alert_webhook_deliveries")
    op.drop_table("registry_alert_positions")
    op.drop_table("registry_alert_failures")
    op.drop_index("registry_alert_episodes_open", "registry_alert_episodes")
    op.drop_table("registry_alert_episodes")
    op.drop_table("registry_alert_rules")
