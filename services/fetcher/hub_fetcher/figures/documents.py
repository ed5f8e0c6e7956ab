"""Figures computed from BC documents (API v2.0): pure rules over validated entities.

Definitions (the architecture's figures table):

* overdue sales invoices: posted and still open (status Open), due before today;
  amounts are ``remainingAmount``. A corrective invoice (posted when a posted credit memo is
  cancelled) keeps the status Corrective, paid or not, so it counts while its remaining
  amount is not zero;
* overdue purchase invoices: the same from purchaseInvoices, which have no remaining amount
  in API v2.0, so ``totalAmountIncludingTax`` is used (and said so in the figure); nor can
  a corrective purchase invoice be told paid from unpaid there, so none counts;
* purchase invoices due next week: open, due from today+1 to today+7;
* open sales documents: unposted quotes, orders and invoices (Draft / In Review);
* sales this month: what BC's "Sales This Month" cue sums, the customer ledger's "Sales
  (LCY)" of invoices and credit memos posted from the first of the month to today, read per
  customer from the customerSales query (the documents' own statuses cannot tell a posted
  invoice from a released one: both are Open);
* cash-flow forecast: 13 weekly buckets from today; opening cash, plus receipts expected from
  open sales invoices by due date, minus payments due on open purchase invoices; overdue
  items fall in week 1; items due after week 13 are outside the horizon.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from hub_common.events import (
    CashFlowForecast,
    ForecastWeek,
    InvoiceLine,
    InvoicesDue,
    OpenSalesDocuments,
    OverdueInvoices,
    SalesThisMonth,
)
from hub_common.money import ZERO, as_booked, total

OPEN = "Open"
CORRECTIVE = "Corrective"
PAID = "Paid"
UNPOSTED_INVOICE_STATUSES = frozenset({"Draft", "In_x0020_Review", "In Review"})
LARGEST = 10
FORECAST_WEEKS = 13


@dataclass(frozen=True)
class OpenItem:
    """An open posted invoice: who, when it is due and what is still to pay."""

    number: str
    counterparty: str
    due_date: dt.date
    amount: Decimal


def overdue(
    items: Iterable[OpenItem],
    *,
    today: dt.date,
    basis: Literal["remaining_amount", "total_including_tax"],
    link: Callable[[OpenItem], str],
    read_at: dt.datetime,
) -> OverdueInvoices:
    late = [item for item in items if item.due_date < today]
    largest = sorted(late, key=lambda item: (-item.amount, item.due_date, item.number))[:LARGEST]
    return OverdueInvoices(
        count=len(late),
        total=total(item.amount for item in late),
        largest=[
            InvoiceLine(
                number=item.number,
                counterparty=item.counterparty,
                due_date=item.due_date,
                days_overdue=(today - item.due_date).days,
                amount=item.amount,
                link=link(item),
            )
            for item in largest
        ],
        amount_basis=basis,
        read_at=read_at,
    )


def due_next_week(items: Iterable[OpenItem], *, today: dt.date, read_at: dt.datetime) -> InvoicesDue:
    first, last = today + dt.timedelta(days=1), today + dt.timedelta(days=7)
    due = [item for item in items if first <= item.due_date <= last]
    return InvoicesDue(count=len(due), amount=total(item.amount for item in due), read_at=read_at)


@dataclass(frozen=True)
class SalesDocument:
    status: str
    amount_including_tax: Decimal


def open_sales_documents(
    *,
    quotes: Sequence[SalesDocument],
    orders: Sequence[SalesDocument],
    unposted_invoices: Sequence[SalesDocument],
    read_at: dt.datetime,
) -> OpenSalesDocuments:
    """Every quote and order is unposted; invoices count only while Draft or In Review."""
    invoices = [doc for doc in unposted_invoices if doc.status in UNPOSTED_INVOICE_STATUSES]
    return OpenSalesDocuments(
        quotes_count=len(quotes),
        quotes_amount=total(doc.amount_including_tax for doc in quotes),
        orders_count=len(orders),
        orders_amount=total(doc.amount_including_tax for doc in orders),
        invoices_count=len(invoices),
        invoices_amount=total(doc.amount_including_tax for doc in invoices),
        read_at=read_at,
    )


def sales_this_month(customer_sales: Iterable[Decimal], *, read_at: dt.datetime) -> SalesThisMonth:
    """The customers' sales of the month, already in the company's currency."""
    return SalesThisMonth(amount=total(customer_sales), read_at=read_at)


def week_index(due_date: dt.date, today: dt.date) -> int | None:
    """0 for overdue and this week, up to 12; None beyond the 13-week horizon."""
    if due_date < today:
        return 0
    index = (due_date - today).days // 7
    return index if index < FORECAST_WEEKS else None


def cash_flow_forecast(
    *,
    opening_cash: Decimal,
    receivables: Iterable[OpenItem],
    payables: Iterable[OpenItem],
    today: dt.date,
    read_at: dt.datetime,
) -> CashFlowForecast:
    receipts = [ZERO] * FORECAST_WEEKS
    payments = [ZERO] * FORECAST_WEEKS
    for item in receivables:
        index = week_index(item.due_date, today)
        if index is not None:
            receipts[index] += item.amount
    for item in payables:
        index = week_index(item.due_date, today)
        if index is not None:
            payments[index] += item.amount
    weeks = []
    balance = opening_cash
    low_point = opening_cash
    for index in range(FORECAST_WEEKS):
        balance = balance + receipts[index] - payments[index]
        low_point = min(low_point, balance)
        weeks.append(
            ForecastWeek(
                week_start=today + dt.timedelta(days=7 * index),
                receipts=as_booked(receipts[index]),
                payments=as_booked(payments[index]),
                closing_balance=as_booked(balance),
            )
        )
    return CashFlowForecast(
        opening_cash=as_booked(opening_cash), weeks=weeks, low_point=as_booked(low_point), read_at=read_at
    )
