"""Exchange rates per company, and each accountant's reporting currency.

Snapshots now carry the rates each company's Business Central holds (as of the snapshot's
date); the dashboard converts amounts with them into a reporting currency an accountant
chooses. Companies read before this revision have no rates until their next snapshot.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_company_rates",
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("company_id", sa.Uuid(), nullable=False),
        sa.Column("currency_code", sa.String(length=10), nullable=False),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("lcy_per_unit", sa.Numeric(31, 15), nullable=True),
        sa.Column("starting_date", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "company_id", "currency_code"),
    )
    op.create_index("ix_gateway_company_rates_firm_currency", "gateway_company_rates", ["firm_id", "currency_code"])
    with op.batch_alter_table("gateway_companies") as batch:
        batch.add_column(sa.Column("exchange_rates_read", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("exchange_rates_unavailable", sa.String(length=500), nullable=True))
    with op.batch_alter_table("gateway_preferences") as batch:
        batch.add_column(sa.Column("reporting_currency", sa.String(length=3), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateway_preferences") as batch:
        batch.drop_column("reporting_currency")
    with op.batch_alter_table("gateway_companies") as batch:
        batch.drop_column("exchange_rates_unavailable")
        batch.drop_column("exchange_rates_read")
    op.drop_index("ix_gateway_company_rates_firm_currency", table_name="gateway_company_rates")
    op.drop_table("gateway_company_rates")
