"""The dashboard: a column per figure, Check Errors, refresh progress, preferences, views.

Revision ID: 0006
Revises: 0005

Existing rows get their figure columns and assigned accountant from the JSON they already
hold. The backfill reads the JSON with its own frozen rules, not the live code, so this
migration means the same thing whenever it runs.
"""

import json
import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

AMOUNT_COLUMNS = (
    "figure_taxes_due",
    "figure_open_sales_documents_amount",
    "figure_purchase_invoices_due_next_week_amount",
    "figure_overdue_sales_invoices_amount",
    "figure_overdue_purchase_invoices_amount",
    "figure_sales_this_month",
    "figure_forecast_low_point",
)
COUNT_COLUMNS = (
    "figure_open_sales_documents_count",
    "figure_purchase_invoices_due_next_week_count",
    "figure_overdue_sales_invoices_count",
    "figure_overdue_purchase_invoices_count",
)


def _figure(figures: dict[str, Any], name: str, field: str) -> Any:
    part = figures.get(name)
    return part.get(field) if isinstance(part, dict) else None


def _backfilled(figures: dict[str, Any]) -> dict[str, Any]:
    documents = figures.get("open_sales_documents")
    amount = lambda value: None if value is None else Decimal(str(value))  # noqa: E731
    return {
        "figure_taxes_due": amount(_figure(figures, "taxes_due", "amount")),
        "figure_open_sales_documents_count": (
            sum(int(documents[f"{kind}_count"]) for kind in ("quotes", "orders", "invoices"))
            if isinstance(documents, dict)
            else None
        ),
        "figure_open_sales_documents_amount": (
            sum(Decimal(str(documents[f"{kind}_amount"])) for kind in ("quotes", "orders", "invoices"))
            if isinstance(documents, dict)
            else None
        ),
        "figure_purchase_invoices_due_next_week_count": _figure(figures, "purchase_invoices_due_next_week", "count"),
        "figure_purchase_invoices_due_next_week_amount": amount(
            _figure(figures, "purchase_invoices_due_next_week", "amount")
        ),
        "figure_overdue_sales_invoices_count": _figure(figures, "overdue_sales_invoices", "count"),
        "figure_overdue_sales_invoices_amount": amount(_figure(figures, "overdue_sales_invoices", "total")),
        "figure_overdue_purchase_invoices_count": _figure(figures, "overdue_purchase_invoices", "count"),
        "figure_overdue_purchase_invoices_amount": amount(_figure(figures, "overdue_purchase_invoices", "total")),
        "figure_sales_this_month": amount(_figure(figures, "sales_this_month", "amount")),
        "figure_forecast_low_point": amount(_figure(figures, "cash_flow_forecast", "low_point")),
    }


def upgrade() -> None:
    with op.batch_alter_table("gateway_companies") as batch:
        batch.alter_column("cash_total", new_column_name="figure_cash")
        for name in AMOUNT_COLUMNS:
            batch.add_column(sa.Column(name, sa.Numeric(28, 2), nullable=True))
        for name in COUNT_COLUMNS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=True))
    with op.batch_alter_table("gateway_clients") as batch:
        batch.add_column(sa.Column("assigned_accountant_id", sa.Uuid(), nullable=True))
        batch.create_index("ix_gateway_clients_assigned_accountant_id", ["assigned_accountant_id"])
    with op.batch_alter_table("gateway_connection_tests") as batch:
        batch.add_column(sa.Column("tenant", sa.String(253), nullable=True))
        batch.add_column(sa.Column("environment", sa.String(100), nullable=True))

    connection = op.get_bind()
    companies = sa.table(
        "gateway_companies",
        sa.column("client_id", sa.Uuid()),
        sa.column("company_id", sa.Uuid()),
        sa.column("figures_json", sa.Text()),
        *(sa.column(name, sa.Numeric(28, 2)) for name in AMOUNT_COLUMNS),
        *(sa.column(name, sa.Integer()) for name in COUNT_COLUMNS),
    )
    rows = connection.execute(
        sa.select(companies.c.client_id, companies.c.company_id, companies.c.figures_json).where(
            companies.c.figures_json.is_not(None)
        )
    ).all()
    for client_id, company_id, figures_json in rows:
        connection.execute(
            companies.update()
            .where(companies.c.client_id == client_id, companies.c.company_id == company_id)
            .values(**_backfilled(json.loads(figures_json)))
        )
    clients = sa.table(
        "gateway_clients",
        sa.column("client_id", sa.Uuid()),
        sa.column("card_json", sa.Text()),
        sa.column("assigned_accountant_id", sa.Uuid()),
    )
    for client_id, card_json in connection.execute(sa.select(clients.c.client_id, clients.c.card_json)).all():
        assigned = json.loads(card_json).get("assigned_accountant_id")
        if assigned:
            connection.execute(
                clients.update()
                .where(clients.c.client_id == client_id)
                .values(assigned_accountant_id=uuid.UUID(str(assigned)))
            )

    op.create_table(
        "gateway_failures",
        sa.Column("failure_id", sa.Uuid(), primary_key=True),
        sa.Column("firm_id", sa.Uuid(), nullable=False, index=True),
        sa.Column("origin", sa.String(20), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=True, index=True),
        sa.Column("company_id", sa.Uuid(), nullable=True),
        sa.Column("company_name", sa.String(250), nullable=True),
        sa.Column("tenant", sa.String(253), nullable=True),
        sa.Column("environment", sa.String(100), nullable=True),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("failure_json", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_gateway_failures_firm_time", "gateway_failures", ["firm_id", "occurred_at"])
    op.create_table(
        "gateway_refreshes",
        sa.Column("refresh_id", sa.Uuid(), primary_key=True),
        sa.Column("firm_id", sa.Uuid(), nullable=False, index=True),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("company_id", sa.Uuid(), nullable=True),
        sa.Column("correlation_id", sa.String(100), nullable=False, index=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "gateway_preferences",
        sa.Column("accountant_id", sa.Uuid(), primary_key=True),
        sa.Column("firm_id", sa.Uuid(), nullable=False, index=True),
        sa.Column("columns_json", sa.Text(), nullable=False),
        sa.Column("locale", sa.String(35), nullable=True),
        sa.Column("page_size", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "gateway_saved_views",
        sa.Column("view_id", sa.Uuid(), primary_key=True),
        sa.Column("accountant_id", sa.Uuid(), nullable=False, index=True),
        sa.Column("firm_id", sa.Uuid(), nullable=False, index=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("query_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("accountant_id", "name", name="uq_gateway_saved_views_name"),
    )


def downgrade() -> None:
    op.drop_table("gateway_saved_views")
    op.drop_table("gateway_preferences")
    op.drop_table("gateway_refreshes")
    op.drop_index("ix_gateway_failures_firm_time", table_name="gateway_failures")
    op.drop_table("gateway_failures")
    with op.batch_alter_table("gateway_connection_tests") as batch:
        batch.drop_column("environment")
        batch.drop_column("tenant")
    with op.batch_alter_table("gateway_clients") as batch:
        batch.drop_index("ix_gateway_clients_assigned_accountant_id")
        batch.drop_column("assigned_accountant_id")
    with op.batch_alter_table("gateway_companies") as batch:
        for name in (*AMOUNT_COLUMNS, *COUNT_COLUMNS):
            batch.drop_column(name)
        batch.alter_column("figure_cash", new_column_name="cash_total")
