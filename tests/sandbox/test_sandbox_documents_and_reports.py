"""Documents agree with the books; reports agree with both (no server needed)."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import pytest

from hub_sandbox.documents import CreditMemoStatus, InvoiceStatus
from hub_sandbox.figures import (
    cash_balance,
    cash_flow_forecast,
    customer_totals,
    open_purchase_invoices,
    open_sales_invoices,
    overdue_purchase_invoices,
    overdue_sales_amount,
    overdue_sales_invoices,
    purchase_invoices_due_next_week,
    sales_this_month,
    vendor_balances,
)
from hub_sandbox.odata import ODataQueryError
from hub_sandbox.reports import (
    StatementLine,
    aged_payables_records,
    aged_receivables_records,
    balance_sheet_lines,
    cash_flow_statement_lines,
    income_statement_lines,
    net_income,
    retained_earnings_lines,
    trial_balance_records,
)
from hub_sandbox.seed import AccountCategory, AccountRole, AccountType, CompanyBook, build_book, company_book
from hub_sandbox.tenants import SandboxCompany, build_catalogue

DATES = (dt.date(2026, 1, 1), dt.date(2026, 5, 20), dt.date(2027, 12, 31))


def companies(tenants: int = 10, per_tenant: int = 2) -> list[SandboxCompany]:
    catalogue = build_catalogue(seed=2026, tenant_count=tenants, companies_per_tenant=per_tenant)
    return [c for t in catalogue.tenants for c in t.companies]


def total(amounts: list[Decimal]) -> Decimal:
    return sum(amounts, Decimal(0))


@pytest.mark.parametrize("business_date", DATES)
def test_accounts_agree_with_documents(business_date: dt.date) -> None:
    for company in companies():
        book = company_book(company, business_date)
        posting = [a for a in book.accounts if a.account_type is AccountType.POSTING]
        assert total([a.net_change for a in posting]) == 0
        assert book.balance_of(AccountRole.RECEIVABLES) == total(
            [d.remaining_amount for d in open_sales_invoices(book)]
        )
        assert book.balance_of(AccountRole.PAYABLES) == -total(
            [d.amount_including_tax for d in open_purchase_invoices(book)]
        )
        fiscal_year = [
            d
            for d in book.sales_invoices
            if d.posted and dt.date(business_date.year, 1, 1) <= d.posting_date <= business_date
        ]
        credited = [d for d in book.sales_credit_memos if dt.date(business_date.year, 1, 1) <= d.posting_date]
        assert book.ytd_sales_excluding_tax == total([d.amount_excluding_tax for d in fiscal_year]) - total(
            [d.amount_excluding_tax for d in credited]
        )
        # Every figure has something to show on every date.
        assert overdue_sales_invoices(book)
        assert overdue_purchase_invoices(book)
        assert purchase_invoices_due_next_week(book)
        assert sales_this_month(book) > 0
        assert all(
            d.posting_date <= business_date
            for d in book.sales_invoices + book.sales_credit_memos + book.purchase_invoices
        )


def test_some_paid_invoices_are_partly_credited_and_refunded() -> None:
    books = [company_book(company, DATES[1]) for company in companies(12)]
    memos = [memo for book in books for memo in book.sales_credit_memos]
    assert memos, "no seeded company has a sales credit memo"
    for book in books:
        for memo in book.sales_credit_memos:
            assert memo.posted and memo.status == CreditMemoStatus.PAID and memo.remaining_amount == 0
            assert memo.number.startswith("PSCM") and memo.amount_excluding_tax > 0
            assert memo.party in book.customers


def test_customer_and_vendor_balances_sum_to_the_accounts() -> None:
    for company in companies(6):
        book = company_book(company, DATES[1])
        totals = customer_totals(book).values()
        assert total([t.balance for t in totals]) == book.balance_of(AccountRole.RECEIVABLES)
        assert total([t.overdue for t in totals]) == overdue_sales_amount(book)
        assert total(list(vendor_balances(book).values())) == -book.balance_of(AccountRole.PAYABLES)


def test_document_statuses_and_amounts() -> None:
    book = company_book(companies(1, 1)[0], DATES[1])
    statuses = {d.status for d in book.sales_invoices}
    assert statuses >= {InvoiceStatus.OPEN, InvoiceStatus.PAID}
    assert statuses & {InvoiceStatus.DRAFT, InvoiceStatus.IN_REVIEW}
    assert {d.status for d in book.purchase_invoices} == {
        InvoiceStatus.OPEN,
        InvoiceStatus.PAID,
        InvoiceStatus.DRAFT,
    }
    for document in book.sales_invoices + book.purchase_invoices:
        assert document.amount_including_tax == document.amount_excluding_tax + document.tax_amount
        if document.status == InvoiceStatus.PAID:
            assert document.remaining_amount == 0
            assert document.closed_on is not None
        if not document.posted:
            assert document.remaining_amount == document.amount_including_tax
    # Some sales invoices are partly paid: remaining below the total.
    everyone = [d for c in companies(6) for d in open_sales_invoices(company_book(c, DATES[1]))]
    assert any(d.remaining_amount < d.amount_including_tax for d in everyone)
    assert len({d.number for d in book.sales_invoices}) == len(book.sales_invoices)


def test_balance_sheet_stays_put_while_the_calendar_moves() -> None:
    company = companies(1, 1)[0]
    monday, friday = build_book(company, dt.date(2026, 3, 2)), build_book(company, dt.date(2026, 3, 6))
    for role in (AccountRole.CASH, AccountRole.RECEIVABLES, AccountRole.PAYABLES, AccountRole.OUTPUT_TAX):
        assert monday.balance_of(role) == friday.balance_of(role)
    # Due dates move with the date: the same open invoice is 4 days later on Friday.
    first_monday, first_friday = open_sales_invoices(monday)[0], open_sales_invoices(friday)[0]
    assert first_monday.id == first_friday.id
    assert (first_friday.due_date - first_monday.due_date).days == 4
    assert build_book(company, dt.date(2026, 3, 6)) == friday  # deterministic


def test_aged_receivables_buckets_and_total_row() -> None:
    book = company_book(companies(1, 1)[0], DATES[1])
    rows = aged_receivables_records(book, DATES[1], "30D")
    *customers, total_row = rows
    assert str(total_row["customerId"]) == "00000000-0000-0000-0000-000000000000"
    assert total_row["name"] == "Total"
    assert total_row["balanceDue"] == book.balance_of(AccountRole.RECEIVABLES)
    for field in ("currentAmount", "period1Amount", "period2Amount", "period3Amount", "balanceDue"):
        assert total_row[field] == total([row[field] for row in customers])  # type: ignore[misc]
    overdue = total([Decimal(str(r["balanceDue"])) - Decimal(str(r["currentAmount"])) for r in customers])
    assert overdue == overdue_sales_amount(book)
    assert total_row["period1Label"] == "2026-04-20..2026-05-19"
    assert total_row["currencyCode"] == "GBP"
    # Longer periods move amounts towards the recent buckets, never change the total.
    quarterly = aged_receivables_records(book, DATES[1], "1Q")[-1]
    assert quarterly["balanceDue"] == total_row["balanceDue"]
    assert quarterly["period3Amount"] <= total_row["period3Amount"]  # type: ignore[operator]
    with pytest.raises(ODataQueryError):
        aged_receivables_records(book, DATES[1], "thirty days")


def test_aged_payables_total_is_the_payables_account() -> None:
    book = company_book(companies(1, 1)[0], DATES[1])
    total_row = aged_payables_records(book, DATES[1], "30D")[-1]
    assert total_row["vendorNumber"] == ""
    assert total_row["balanceDue"] == -book.balance_of(AccountRole.PAYABLES)


def _line(lines: list[StatementLine], display: str) -> Decimal:
    return next(line.amount for line in lines if line.display == display)


@pytest.mark.parametrize("business_date", DATES)
def test_statements_agree_with_the_accounts(business_date: dt.date) -> None:
    for company in companies(4):
        book = company_book(company, business_date)
        posting = [a for a in book.accounts if a.account_type is AccountType.POSTING]
        balance_sheet: list[StatementLine] = list(balance_sheet_lines(book))
        assets = total([a.net_change for a in posting if a.category is AccountCategory.ASSETS])
        assert _line(balance_sheet, "Total Assets") == assets
        assert _line(balance_sheet, "Total Liabilities and Equity") == assets
        income: list[StatementLine] = list(income_statement_lines(book))
        revenue = -total([a.net_change for a in posting if a.category is AccountCategory.INCOME])
        costs = total(
            [
                a.net_change
                for a in posting
                if a.category in (AccountCategory.EXPENSE, AccountCategory.COST_OF_GOODS_SOLD)
            ]
        )
        assert _line(income, "Total Income") == revenue
        assert _line(income, "Net Income") == revenue - costs == net_income(book)
        cash_flow: list[StatementLine] = list(cash_flow_statement_lines(book))
        assert _line(cash_flow, "Net Change in Cash") == _line(cash_flow, "Cash at End of Period") == cash_balance(book)
        retained: list[StatementLine] = list(retained_earnings_lines(book))
        assert _line(retained, "Retained Earnings, Period End") == (
            -book.balance_of(AccountRole.RETAINED_EARNINGS) + net_income(book)
        )


def test_trial_balance_is_formatted_text_that_balances() -> None:
    book = company_book(companies(1, 1)[0], DATES[1])
    rows = trial_balance_records(book, DATES[1])
    assert len(rows) == len(book.accounts)

    def amount(text: object) -> Decimal:
        return Decimal(str(text).replace(",", "")) if text else Decimal(0)

    posting = [r for r in rows if r["accountType"] == "Posting"]
    assert total([amount(r["balanceAtDateDebit"]) - amount(r["balanceAtDateCredit"]) for r in posting]) == 0
    big = next(r for r in posting if amount(r["totalDebit"]) >= 1000)
    assert "," in str(big["totalDebit"])
    assert str(big["totalDebit"]).endswith(f"{amount(big['totalDebit']) % 1:.2f}"[1:])


def test_cash_flow_forecast_buckets() -> None:
    book = company_book(companies(1, 1)[0], DATES[1])
    opening, weeks = cash_flow_forecast(book)
    assert opening == cash_balance(book)
    assert len(weeks) == 13
    # Overdue items fall in week 1, so week 1 holds at least every overdue receipt.
    assert weeks[0].receipts >= overdue_sales_amount(book)


def test_thousands_of_companies_start_cheaply() -> None:
    started = time.perf_counter()
    catalogue = build_catalogue(seed=2026, tenant_count=500, companies_per_tenant=3)
    assert time.perf_counter() - started < 2
    assert sum(1 for t in catalogue.tenants for _ in t.companies) >= 1500
    # A company's book is built on demand, in milliseconds.
    last = list(catalogue.tenants[-1].companies)[-1]
    started = time.perf_counter()
    book: CompanyBook = build_book(last, DATES[1])
    assert time.perf_counter() - started < 0.5
    assert book.sales_invoices
