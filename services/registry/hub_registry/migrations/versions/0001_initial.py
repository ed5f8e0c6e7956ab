"""Firms, accountants, clients and the outbox.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _timestamp(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "registry_firms",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(250), nullable=False),
        sa.Column("sample_client_removed", sa.Boolean(), nullable=False),
        _timestamp("created_at"),
    )
    op.create_table(
        "registry_accountants",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("firm_id", sa.Uuid(), sa.ForeignKey("registry_firms.id"), nullable=False, index=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("display_name", sa.String(250), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        _timestamp("created_at"),
    )
    op.create_table(
        "registry_clients",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("firm_id", sa.Uuid(), sa.ForeignKey("registry_firms.id"), nullable=False, index=True),
        sa.Column("name", sa.String(250), nullable=False),
        sa.Column("client_url", sa.String(2000), nullable=False),
        sa.Column("tenant", sa.String(253), nullable=False),
        sa.Column("environment", sa.String(100), nullable=False),
        sa.Column("company_name", sa.String(250), nullable=True),
        sa.Column("contact_name", sa.String(500), nullable=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("phone", sa.String(50), nullable=True),
        sa.Column("notes", sa.String(4000), nullable=True),
        sa.Column("assigned_accountant_id", sa.Uuid(), nullable=True),
        sa.Column("source", sa.String(20), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        _timestamp("removed_at", nullable=True),
    )
    op.create_index(
        "registry_clients_live_environment",
        "registry_clients",
        ["firm_id", "tenant", "environment"],
        unique=True,
        sqlite_where=sa.text("removed_at IS NULL"),
        postgresql_where=sa.text("removed_at IS NULL"),
    )
    op.create_table(
        "registry_outbox",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        _timestamp("created_at"),
        _timestamp("published_at", nullable=True),
    )
    op.create_index("ix_registry_outbox_published_at", "registry_outbox", ["published_at"])


def downgrade() -> None:
    op.drop_table("registry_outbox")
    op.drop_table("registry_clients")
    op.drop_table("registry_accountants")
    op.drop_table("registry_firms")
