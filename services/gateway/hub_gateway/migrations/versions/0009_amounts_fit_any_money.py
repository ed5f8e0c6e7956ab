"""Figure columns hold any amount an event may carry.

Revision ID: 0009
Revises: 0008

Money in events allows 28 digits; Numeric(28, 2) kept only 26 before the point, so a
tenant reporting a larger amount made the snapshot fail to store on PostgreSQL on every
delivery. Numeric(38, 2) holds every valid amount to the cent.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

AMOUNTS = (
    "figure_cash",
    "figure_taxes_due",
    "figure_open_sales_documents_amount",
    "figure_open_sales_quotes_amount",
    "figure_open_sales_orders_amount",
    "figure_unposted_sales_invoices_amount",
    "figure_purchase_invoices_due_next_week_amount",
    "figure_overdue_sales_invoices_amount",
    "figure_overdue_purchase_invoices_amount",
    "figure_sales_this_month",
    "figure_forecast_low_point",
)


def upgrade() -> None:
    with op.batch_alter_table("gateway_companies") as batch:
        for name in AMOUNTS:
            batch.alter_column(name, type_=sa.Numeric(38, 2), existing_type=sa.Numeric(28, 2))


def downgrade() -> None:
    with op.batch_alter_table("gateway_companies") as batch:
        for name in AMOUNTS:
            batch.alter_column(name, type_=sa.Numeric(28, 2), existing_type=sa.Numeric(38, 2))
