"""Every dashboard figure has its read-model column, reads its figure, and has a clear name."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Integer, Numeric

from hub_common.events import CompanyFigures
from hub_gateway.readmodel.columns import DEFAULT_COLUMNS, FIGURE_COLUMNS, FIGURES_BY_KEY, ColumnKind, figure_values
from hub_gateway.readmodel.models import CompanyRow


def test_each_figure_has_a_column_of_its_kind() -> None:
    table = CompanyRow.__table__  # type: ignore[attr-defined]
    for column in FIGURE_COLUMNS:
        stored = table.columns[column.attribute]
        expected = Numeric if column.kind is ColumnKind.AMOUNT else Integer
        assert isinstance(stored.type, expected), column.key
    assert len(FIGURES_BY_KEY) == len(FIGURE_COLUMNS), "keys are unique"
    assert len({c.label for c in FIGURE_COLUMNS}) == len(FIGURE_COLUMNS), "labels are unique"
    assert set(DEFAULT_COLUMNS) <= set(FIGURES_BY_KEY)


def test_a_company_without_figures_has_none_and_parts_add_up() -> None:
    assert set(figure_values(CompanyFigures()).values()) == {None}
    figures = CompanyFigures.model_validate(
        {
            "open_sales_documents": {
                "quotes_count": 1,
                "quotes_amount": "10.00",
                "orders_count": 2,
                "orders_amount": "20.00",
                "invoices_count": 3,
                "invoices_amount": "30.50",
                "read_at": "2026-11-21T00:00:00Z",
            }
        }
    )
    values = figure_values(figures)
    assert values["figure_open_sales_documents_count"] == 6
    assert values["figure_open_sales_documents_amount"] == Decimal("60.50")
    parts = ("open_sales_quotes", "open_sales_orders", "unposted_sales_invoices")
    assert sum(values[f"figure_{part}_amount"] or 0 for part in parts) == Decimal("60.50")


def test_the_largest_amount_an_event_allows_fits_its_column() -> None:
    table = CompanyRow.__table__  # type: ignore[attr-defined]
    largest = Decimal("9" * 28)  # Money's limit: 28 digits
    for column in FIGURE_COLUMNS:
        stored = table.columns[column.attribute].type
        if column.kind is ColumnKind.AMOUNT:
            assert stored.precision - stored.scale >= len(str(largest)), column.key
