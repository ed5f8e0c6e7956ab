"""Open sales quotes, orders and unposted invoices, each a dashboard column.

Revision ID: 0008
Revises: 0007

Existing rows get them from the figures they hold (frozen rules, as in 0006).
"""

import json
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

KINDS = {"quotes": "open_sales_quotes", "orders": "open_sales_orders", "invoices": "unposted_sales_invoices"}


def upgrade() -> None:
    with op.batch_alter_table("gateway_companies") as batch:
        for column in KINDS.values():
            batch.add_column(sa.Column(f"figure_{column}_count", sa.Integer(), nullable=True))
            batch.add_column(sa.Column(f"figure_{column}_amount", sa.Numeric(28, 2), nullable=True))
    companies = sa.table(
        "gateway_companies",
        sa.column("client_id", sa.Uuid()),
        sa.column("company_id", sa.Uuid()),
        sa.column("figures_json", sa.Text()),
        *(sa.column(f"figure_{column}_count", sa.Integer()) for column in KINDS.values()),
        *(sa.column(f"figure_{column}_amount", sa.Numeric(28, 2)) for column in KINDS.values()),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(companies.c.client_id, companies.c.company_id, companies.c.figures_json).where(
            companies.c.figures_json.is_not(None)
        )
    ).all()
    for client_id, company_id, figures_json in rows:
        documents = json.loads(figures_json).get("open_sales_documents")
        if not isinstance(documents, dict):
            continue
        values = {}
        for kind, column in KINDS.items():
            values[f"figure_{column}_count"] = documents.get(f"{kind}_count")
            amount = documents.get(f"{kind}_amount")
            values[f"figure_{column}_amount"] = None if amount is None else Decimal(str(amount))
        connection.execute(
            companies.update()
            .where(companies.c.client_id == client_id, companies.c.company_id == company_id)
            .values(**values)
        )


def downgrade() -> None:
    with op.batch_alter_table("gateway_companies") as batch:
        for column in KINDS.values():
            batch.drop_column(f"figure_{column}_amount")
            batch.drop_column(f"figure_{column}_count")
