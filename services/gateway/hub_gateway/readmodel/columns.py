"""The dashboard's figure columns: what an accountant can show, filter and sort by.

Each figure of a CompanySnapshot that makes sense as one number gets its own column in the
read model, so filtering, sorting and paging thousands of rows happen in SQL; the full
figures (accounts, invoice lists, the forecast) stay in JSON for the details pane.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from hub_common.events import CompanyFigures
from hub_common.i18n import N_


class ColumnKind(StrEnum):
    AMOUNT = "amount"  # money, in the company's currency
    COUNT = "count"


@dataclass(frozen=True)
class FigureColumn:
    key: str  # the name in the API, saved preferences and views
    label: str  # what the accountant reads (a dashboard heading, a workbook heading): a catalogue msgid
    kind: ColumnKind
    read: Callable[[CompanyFigures], Decimal | int | None]
    # Whether adding it up over companies (of one currency) means something.
    totalled: bool = True

    @property
    def short_label(self) -> str:
        """The dashboard's heading: "(amount)" is what every figure but the counts is, so it is
        left out there (the full label is the heading's tooltip)."""
        return self.label.removesuffix(" (amount)")

    @property
    def attribute(self) -> str:
        """The read model column (gateway_companies) holding this figure."""
        return f"figure_{self.key}"


def _open_sales_count(figures: CompanyFigures) -> int | None:
    documents = figures.open_sales_documents
    if documents is None:
        return None
    return documents.quotes_count + documents.orders_count + documents.invoices_count


def _open_sales_amount(figures: CompanyFigures) -> Decimal | None:
    documents = figures.open_sales_documents
    if documents is None:
        return None
    return documents.quotes_amount + documents.orders_amount + documents.invoices_amount


FIGURE_COLUMNS: tuple[FigureColumn, ...] = (
    FigureColumn("cash", N_("Cash"), ColumnKind.AMOUNT, lambda f: f.cash.total if f.cash else None),
    FigureColumn(
        "taxes_due", N_("Taxes due"), ColumnKind.AMOUNT, lambda f: f.taxes_due.amount if f.taxes_due else None
    ),
    FigureColumn("open_sales_documents_count", N_("Open sales documents"), ColumnKind.COUNT, _open_sales_count),
    FigureColumn(
        "open_sales_documents_amount", N_("Open sales documents (amount)"), ColumnKind.AMOUNT, _open_sales_amount
    ),
    FigureColumn(
        "open_sales_quotes_count",
        N_("Open sales quotes"),
        ColumnKind.COUNT,
        lambda f: f.open_sales_documents.quotes_count if f.open_sales_documents else None,
    ),
    FigureColumn(
        "open_sales_quotes_amount",
        N_("Open sales quotes (amount)"),
        ColumnKind.AMOUNT,
        lambda f: f.open_sales_documents.quotes_amount if f.open_sales_documents else None,
    ),
    FigureColumn(
        "open_sales_orders_count",
        N_("Open sales orders"),
        ColumnKind.COUNT,
        lambda f: f.open_sales_documents.orders_count if f.open_sales_documents else None,
    ),
    FigureColumn(
        "open_sales_orders_amount",
        N_("Open sales orders (amount)"),
        ColumnKind.AMOUNT,
        lambda f: f.open_sales_documents.orders_amount if f.open_sales_documents else None,
    ),
    FigureColumn(
        "unposted_sales_invoices_count",
        N_("Unposted sales invoices"),
        ColumnKind.COUNT,
        lambda f: f.open_sales_documents.invoices_count if f.open_sales_documents else None,
    ),
    FigureColumn(
        "unposted_sales_invoices_amount",
        N_("Unposted sales invoices (amount)"),
        ColumnKind.AMOUNT,
        lambda f: f.open_sales_documents.invoices_amount if f.open_sales_documents else None,
    ),
    FigureColumn(
        "purchase_invoices_due_next_week_count",
        N_("Purchase invoices due next week"),
        ColumnKind.COUNT,
        lambda f: f.purchase_invoices_due_next_week.count if f.purchase_invoices_due_next_week else None,
    ),
    FigureColumn(
        "purchase_invoices_due_next_week_amount",
        N_("Purchase invoices due next week (amount)"),
        ColumnKind.AMOUNT,
        lambda f: f.purchase_invoices_due_next_week.amount if f.purchase_invoices_due_next_week else None,
    ),
    FigureColumn(
        "overdue_sales_invoices_count",
        N_("Overdue sales invoices"),
        ColumnKind.COUNT,
        lambda f: f.overdue_sales_invoices.count if f.overdue_sales_invoices else None,
    ),
    FigureColumn(
        "overdue_sales_invoices_amount",
        N_("Overdue sales invoices (amount)"),
        ColumnKind.AMOUNT,
        lambda f: f.overdue_sales_invoices.total if f.overdue_sales_invoices else None,
    ),
    FigureColumn(
        "overdue_purchase_invoices_count",
        N_("Overdue purchase invoices"),
        ColumnKind.COUNT,
        lambda f: f.overdue_purchase_invoices.count if f.overdue_purchase_invoices else None,
    ),
    FigureColumn(
        "overdue_purchase_invoices_amount",
        N_("Overdue purchase invoices (amount)"),
        ColumnKind.AMOUNT,
        lambda f: f.overdue_purchase_invoices.total if f.overdue_purchase_invoices else None,
    ),
    FigureColumn(
        "sales_this_month",
        N_("Sales this month"),
        ColumnKind.AMOUNT,
        lambda f: f.sales_this_month.amount if f.sales_this_month else None,
    ),
    FigureColumn(
        "forecast_low_point",
        N_("Forecast low point (13 weeks)"),
        ColumnKind.AMOUNT,
        lambda f: f.cash_flow_forecast.low_point if f.cash_flow_forecast else None,
        # Each company's low point falls in its own week: their sum means nothing.
        totalled=False,
    ),
)

FIGURES_BY_KEY = {column.key: column for column in FIGURE_COLUMNS}

# What a new accountant sees before choosing.
DEFAULT_COLUMNS: tuple[str, ...] = (
    "cash",
    "taxes_due",
    "purchase_invoices_due_next_week_amount",
    "overdue_sales_invoices_amount",
    "overdue_purchase_invoices_amount",
)


def figure_values(figures: CompanyFigures) -> dict[str, Decimal | int | None]:
    """Every figure column's value, keyed by its read model attribute."""
    return {column.attribute: column.read(figures) for column in FIGURE_COLUMNS}
