"""Invitations and the outbox.

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
        "invitations_invitations",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(253), nullable=False),
        sa.Column("environment", sa.String(100), nullable=False),
        sa.Column("client_name", sa.String(250), nullable=False),
        sa.Column("companies", sa.JSON(), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("accountant_name", sa.String(250), nullable=False),
        sa.Column("welcome_text", sa.String(4000), nullable=True),
        sa.Column("raised_by", sa.String(320), nullable=False),
        _timestamp("created_at"),
        _timestamp("expires_at"),
        sa.Column("status", sa.String(20), nullable=False),
        _timestamp("accepted_at", nullable=True),
        sa.Column("accepted_by_accountant_id", sa.Uuid(), nullable=True),
        sa.Column("firm_id", sa.Uuid(), nullable=True),
        _timestamp("mail_sent_at", nullable=True),
        _timestamp("mail_claimed_until", nullable=True),
        sa.Column("mail_attempts", sa.Integer(), nullable=False),
        sa.Column("mail_error", sa.String(500), nullable=True),
    )
    op.create_index("ix_invitations_invitations_token_hash", "invitations_invitations", ["token_hash"])
    op.create_index("ix_invitations_invitations_email", "invitations_invitations", ["email"])
    op.create_index("ix_invitations_invitations_mail_sent_at", "invitations_invitations", ["mail_sent_at"])
    op.create_table(
        "invitations_outbox",
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
    op.create_index("ix_invitations_outbox_published_at", "invitations_outbox", ["published_at"])


def downgrade() -> None:
    op.drop_table("invitations_outbox")
    op.drop_table("invitations_invitations")
