"""Refresh schedules per firm and per client, and when each client was last refreshed on schedule.

Every live client takes the time the old hub-wide schedule last ran as its last scheduled
refresh, so an upgrade neither refreshes every client at once nor skips a round.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from hub_common.db import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_refresh_schedules",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("firm_id", sa.Uuid(), sa.ForeignKey("registry_firms.id"), nullable=False),
        sa.Column("client_id", sa.Uuid(), sa.ForeignKey("registry_clients.id"), nullable=True),
        sa.Column("every_minutes", sa.Integer(), nullable=True),
        sa.Column("quiet_from", sa.Time(), nullable=True),
        sa.Column("quiet_until", sa.Time(), nullable=True),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_index(
        "registry_refresh_schedules_firm",
        "registry_refresh_schedules",
        ["firm_id"],
        unique=True,
        sqlite_where=sa.text("client_id IS NULL"),
        postgresql_where=sa.text("client_id IS NULL"),
    )
    op.create_index("registry_refresh_schedules_client", "registry_refresh_schedules", ["client_id"], unique=True)
    op.create_table(
        "registry_client_schedule_runs",
        sa.Column("client_id", sa.Uuid(), sa.ForeignKey("registry_clients.id"), primary_key=True),
        sa.Column("last_run_at", UtcDateTime(), nullable=False),
    )
    op.execute(
        "INSERT INTO registry_client_schedule_runs (client_id, last_run_at)"
        " SELECT registry_clients.id, registry_schedule_runs.last_run_at"
        " FROM registry_clients JOIN registry_schedule_runs ON registry_schedule_runs.name = 'refresh-every-client'"
        " WHERE registry_clients.removed_at IS NULL"
    )
    op.drop_table("registry_schedule_runs")


def downgrade() -> None:
    op.create_table(
        "registry_schedule_runs",
        sa.Column("name", sa.String(length=50), primary_key=True),
        sa.Column("last_run_at", UtcDateTime(), nullable=False),
    )
    op.drop_table("registry_client_schedule_runs")
    op.drop_index("registry_refresh_schedules_client", "registry_refresh_schedules")
    op.drop_index("registry_refresh_schedules_firm", "registry_refresh_schedules")
    op.drop_table("registry_refresh_schedules")
