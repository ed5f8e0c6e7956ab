"""The ground truth of every figure the hub shows, computed straight from a company's book.

The cue services are computed with these functions, and the hub's tests can call them
(``company_book(company, business_date)`` then e.g. ``overdue_sales_invoices(book)``)
to know what the fetcher must compute from the API, independently of the API.

"Today" is always the book's business date. All amounts are in local currency.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from hub_sandbox.documents import Document
from hub_sandbox.seed import TAX_ROLES, AccountRole, AccountType, CompanyBook, GLAccount

WEEKS_IN_FORECAST = 13


def _sum(amounts: list[Decimal]) -> Decimal:
    return sum(amounts, Decimal(0))


# -- cash and taxes ---------------------------------------------------------------------


def cash_accounts(book: CompanyBook) -> tuple[GLAccount, ...]:
    """Posting accounts of category Assets with subCategory "Cash" (what the hub's API
    rule finds; in the sandbox it is exactly BC's "Cash Accounts" set)."""
    return book.accounts_with_role(AccountRole.CASH)


def cash_balance(book: CompanyBook) -> Decimal:
    """CashAccountsBalanceAmountDecimal of the finance cues."""
    return book.balance_of(AccountRole.CASH)


def tax_accounts(book: CompanyBook) -> tuple[GLAccount, ...]:
    """The tax payable accounts (output tax, input tax, settlement), all Liabilities."""
    return tuple(a for a in book.accounts if a.role in TAX_ROLES and a.account_type is AccountType.POSTING)


# -- sales invoices ---------------------------------------------------------------------


def open_sales_invoices(book: CompanyBook) -> list[Document]:
    """Posted sales invoices with status Open."""
    return [d for d in book.sales_invoices if d.is_open_posted_invoice]


def overdue_sales_invoices(book: CompanyBook) -> list[Document]:
    """Open posted sales invoices with dueDate before today."""
    return [d for d in open_sales_invoices(book) if d.due_date < book.business_date]


def overdue_sales_amount(book: CompanyBook) -> Decimal:
    """Sum of remainingAmount of the overdue sales invoices (OverdueSalesInvoiceAmountDecimal)."""
    return _sum([d.remaining_amount for d in overdue_sales_invoices(book)])


def sales_invoices_due_next_week(book: CompanyBook) -> list[Document]:
    """Open posted sales invoices due from today+1 to today+7."""
    return _due_next_week(open_sales_invoices(book), book.business_date)


def _posted_sales(book: CompanyBook, first: dt.date) -> list[tuple[Document, Decimal]]:
    """Each posted sales invoice and credit memo from ``first`` to today, with its sign in
    the customer ledger ("Sales (LCY)": an invoice adds, a credit memo takes away)."""
    return [
        (d, sign)
        for documents, sign in ((book.sales_invoices, Decimal(1)), (book.sales_credit_memos, Decimal(-1)))
        for d in documents
        if d.posted and first <= d.posting_date <= book.business_date
    ]


def customer_sales(book: CompanyBook, first: dt.date | None, last: dt.date | None) -> dict[str, Decimal]:
    """By customer number: "Sales (LCY)" of its ledger's invoices and credit memos posted from
    ``first`` to ``last`` (either open-ended when None), as query 30000 sums them."""
    sales: dict[str, Decimal] = {c.number: Decimal(0) for c in book.customers}
    for documents, sign in ((book.sales_invoices, Decimal(1)), (book.sales_credit_memos, Decimal(-1))):
        for d in documents:
            if d.posted and (first is None or first <= d.posting_date) and (last is None or d.posting_date <= last):
                sales[d.party.number] = sales.get(d.party.number, Decimal(0)) + sign * d.amount_excluding_tax
    return sales


def sales_this_month(book: CompanyBook) -> Decimal:
    """Posted sales invoices less posted sales credit memos from the first of the month to
    today, excluding tax (BC's "Sales (LCY)", as SalesThisMonthAmount sums it)."""
    return _sum([sign * d.amount_excluding_tax for d, sign in _posted_sales(book, book.business_date.replace(day=1))])


def sales_this_month_including_tax(book: CompanyBook) -> Decimal:
    return _sum([sign * d.amount_including_tax for d, sign in _posted_sales(book, book.business_date.replace(day=1))])


def unposted_sales_invoices(book: CompanyBook) -> list[Document]:
    """Draft and In Review sales invoices (the "ongoing" ones)."""
    return [d for d in book.sales_invoices if not d.posted]


# -- purchase invoices ------------------------------------------------------------------


def open_purchase_invoices(book: CompanyBook) -> list[Document]:
    return [d for d in book.purchase_invoices if d.is_open_posted_invoice]


def overdue_purchase_invoices(book: CompanyBook) -> list[Document]:
    return [d for d in open_purchase_invoices(book) if d.due_date < book.business_date]


def overdue_purchase_amount(book: CompanyBook) -> Decimal:
    """Sum of totalAmountIncludingTax of the overdue purchase invoices (never partly paid
    in the sandbox, so it is also OverduePurchInvoiceAmountDecimal)."""
    return _sum([d.amount_including_tax for d in overdue_purchase_invoices(book)])


def purchase_invoices_due_next_week(book: CompanyBook) -> list[Document]:
    """Open posted purchase invoices due from today+1 to today+7."""
    return _due_next_week(open_purchase_invoices(book), book.business_date)


def unposted_purchase_invoices(book: CompanyBook) -> list[Document]:
    return [d for d in book.purchase_invoices if not d.posted]


def _due_next_week(documents: list[Document], today: dt.date) -> list[Document]:
    first, last = today + dt.timedelta(days=1), today + dt.timedelta(days=7)
    return [d for d in documents if first <= d.due_date <= last]


# -- per customer -----------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerTotals:
    balance: Decimal  # open remaining amounts
    overdue: Decimal  # open remaining amounts due before today
    sales_excluding_tax: Decimal  # every posted invoice the sandbox holds, less its credit memos


def customer_totals(book: CompanyBook) -> dict[str, CustomerTotals]:
    """By customer number: what customers.balanceDue and customerFinancialDetails show."""
    balance: dict[str, Decimal] = defaultdict(Decimal)
    overdue: dict[str, Decimal] = defaultdict(Decimal)
    sales: dict[str, Decimal] = defaultdict(Decimal)
    for memo in book.sales_credit_memos:
        if memo.posted:
            sales[memo.party.number] -= memo.amount_excluding_tax
    for document in book.sales_invoices:
        if not document.posted:
            continue
        number = document.party.number
        sales[number] += document.amount_excluding_tax
        if document.is_open_posted_invoice:
            balance[number] += document.remaining_amount
            if document.due_date < book.business_date:
                overdue[number] += document.remaining_amount
    return {c.number: CustomerTotals(balance[c.number], overdue[c.number], sales[c.number]) for c in book.customers}


def vendor_balances(book: CompanyBook) -> dict[str, Decimal]:
    """By vendor number: vendors.balance (what is owed, positive)."""
    balance: dict[str, Decimal] = {v.number: Decimal(0) for v in book.vendors}
    for document in open_purchase_invoices(book):
        balance[document.party.number] += document.amount_including_tax
    return balance


def top10_customer_sales_ytd(book: CompanyBook) -> Decimal:
    """Sales (LCY) of the ten biggest customers, fiscal year start to today."""
    sales: dict[str, Decimal] = defaultdict(Decimal)
    for d, sign in _posted_sales(book, book.fiscal_year_start):
        sales[d.party.number] += sign * d.amount_excluding_tax
    return _sum(sorted(sales.values(), reverse=True)[:10])


def average_collection_days(book: CompanyBook) -> Decimal:
    """Average days from posting to payment of invoices paid in the last three months."""
    since = book.business_date - dt.timedelta(days=91)
    days = [
        (d.closed_on - d.posting_date).days
        for d in book.sales_invoices
        if d.closed_on is not None and since <= d.closed_on <= book.business_date
    ]
    if not days:
        return Decimal(0)
    return (Decimal(sum(days)) / len(days)).quantize(Decimal("0.1"))


# -- cash-flow forecast -----------------------------------------------------------------


@dataclass(frozen=True)
class ForecastWeek:
    starts: dt.date
    receipts: Decimal
    payments: Decimal


def cash_flow_forecast(book: CompanyBook) -> tuple[Decimal, list[ForecastWeek]]:
    """Opening cash and 13 weekly buckets from today: receipts from open sales invoices
    (remaining amount) and payments of open purchase invoices (total), by due date;
    overdue items fall in week 1."""
    today = book.business_date
    receipts = [Decimal(0)] * WEEKS_IN_FORECAST
    payments = [Decimal(0)] * WEEKS_IN_FORECAST
    for document in open_sales_invoices(book):
        week = max(0, (document.due_date - today).days // 7)
        if week < WEEKS_IN_FORECAST:
            receipts[week] += document.remaining_amount
    for document in open_purchase_invoices(book):
        week = max(0, (document.due_date - today).days // 7)
        if week < WEEKS_IN_FORECAST:
            payments[week] += document.amount_including_tax
    weeks = [ForecastWeek(today + dt.timedelta(weeks=n), receipts[n], payments[n]) for n in range(WEEKS_IN_FORECAST)]
    return cash_balance(book), weeks
