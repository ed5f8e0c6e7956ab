"""Run-time changes to a company's books: every figure follows the documents, the trial
balance still sums to zero, and the seeded book is untouched."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from hub_sandbox.book_changes import (
    GENERAL_LEDGER_ENTRIES,
    PURCHASE_INVOICES,
    SALES_INVOICES,
    BookChangeError,
    BookChanges,
    ChangeType,
    CompanyChanges,
    apply_changes,
    post_bank_transfers,
    post_purchase_invoice,
    post_sales_credit_memo,
    post_sales_invoice,
    register_customer_payment,
)
from hub_sandbox.documents import CreditMemoStatus, InvoiceStatus
from hub_sandbox.entities import general_ledger_entry_records
from hub_sandbox.figures import (
    cash_balance,
    cash_flow_forecast,
    customer_totals,
    open_sales_invoices,
    overdue_sales_amount,
    sales_invoices_due_next_week,
    sales_this_month,
    vendor_balances,
)
from hub_sandbox.reports import trial_balance_records
from hub_sandbox.seed import AccountRole, AccountType, CompanyBook, build_book
from hub_sandbox.tenants import SandboxCompany, build_catalogue

BUSINESS_DATE = dt.date(2026, 5, 20)
AT = dt.datetime(2026, 5, 20, 10, 0, tzinfo=dt.UTC)


def _company(tenant: int = 0) -> SandboxCompany:
    catalogue = build_catalogue(seed=2026, tenant_count=3, companies_per_tenant=2)
    return catalogue.tenants[tenant].environments[0].companies[0]


def _posting_total(book: CompanyBook) -> Decimal:
    return sum((a.net_change for a in book.accounts if a.account_type is AccountType.POSTING), Decimal(0))


def _receivables_agree(book: CompanyBook) -> None:
    assert book.balance_of(AccountRole.RECEIVABLES) == sum(
        (d.remaining_amount for d in open_sales_invoices(book)), Decimal(0)
    )
    assert sum((t.balance for t in customer_totals(book).values()), Decimal(0)) == book.balance_of(
        AccountRole.RECEIVABLES
    )
    assert -sum(vendor_balances(book).values(), Decimal(0)) == book.balance_of(AccountRole.PAYABLES)


def _entries_sum_to_balances(book: CompanyBook) -> None:
    sums: dict[object, Decimal] = {}
    for record in general_ledger_entry_records(book, book.business_date):
        debit, credit = record["debitAmount"], record["creditAmount"]
        assert isinstance(debit, Decimal) and isinstance(credit, Decimal)
        sums[record["accountId"]] = sums.get(record["accountId"], Decimal(0)) + debit - credit
    for account in book.accounts:
        if account.account_type is AccountType.POSTING:
            assert sums.get(account.id, Decimal(0)) == account.net_change, account.number


def test_no_changes_leave_the_seeded_book_as_it_is() -> None:
    seeded = build_book(_company(), BUSINESS_DATE)
    assert apply_changes(seeded, CompanyChanges()) is seeded
    _entries_sum_to_balances(seeded)


def test_a_refunded_credit_memo_lowers_sales_and_cash_and_leaves_receivables() -> None:
    company = _company()
    seeded = build_book(company, BUSINESS_DATE)
    customer = seeded.customers[0]
    result = post_sales_credit_memo(seeded, CompanyChanges(), customer.number, Decimal("240.00"), AT)
    book = apply_changes(seeded, result.changes)

    memo = result.document
    assert memo is not None and memo.status == CreditMemoStatus.PAID and memo.posted
    assert memo.amount_including_tax == Decimal("240.00") and memo.remaining_amount == 0
    assert memo in book.sales_credit_memos and memo.posting_date == BUSINESS_DATE
    assert sales_this_month(book) == sales_this_month(seeded) - memo.amount_excluding_tax
    assert book.ytd_sales_excluding_tax == seeded.ytd_sales_excluding_tax - memo.amount_excluding_tax
    assert book.balance_of(AccountRole.OUTPUT_TAX) == seeded.balance_of(AccountRole.OUTPUT_TAX) + memo.tax_amount
    assert cash_balance(book) == cash_balance(seeded) - Decimal("240.00")
    assert book.balance_of(AccountRole.RECEIVABLES) == seeded.balance_of(AccountRole.RECEIVABLES)
    assert customer_totals(book)[customer.number].sales_excluding_tax == (
        customer_totals(seeded)[customer.number].sales_excluding_tax - memo.amount_excluding_tax
    )
    assert _posting_total(book) == 0
    _entries_sum_to_balances(book)
    assert result.record_changes[0].entity_set == "salesCreditMemos"
    again = post_sales_credit_memo(book, result.changes, customer.number, Decimal("1.00"), AT)
    assert again.document is not None and again.document.number == f"PSCM{int(memo.number[4:]) + 1}"
    with pytest.raises(BookChangeError):
        post_sales_credit_memo(seeded, CompanyChanges(), "C99999", Decimal("1.00"), AT)
    with pytest.raises(BookChangeError):
        post_sales_credit_memo(seeded, CompanyChanges(), customer.number, Decimal("0.001"), AT)
    blocked = dataclasses.replace(customer, blocked="All")
    with pytest.raises(BookChangeError, match="blocked"):
        post_sales_credit_memo(
            dataclasses.replace(seeded, documents=dataclasses.replace(seeded.documents, customers=(blocked,))),
            CompanyChanges(),
            customer.number,
            Decimal("1.00"),
            AT,
        )


def test_a_posted_sales_invoice_moves_receivables_sales_tax_and_the_figures() -> None:
    company = _company()
    seeded = build_book(company, BUSINESS_DATE)
    due = BUSINESS_DATE + dt.timedelta(days=3)
    customer = next(c for c in seeded.customers if c.blocked == "_x0020_")
    result = post_sales_invoice(seeded, CompanyChanges(), customer.number, Decimal("1200.00"), due, AT)
    book = apply_changes(seeded, result.changes)

    invoice = result.document
    assert invoice is not None and invoice.status == InvoiceStatus.OPEN and invoice.posted
    assert invoice.number == f"PSI{max(int(d.number[3:]) for d in seeded.sales_invoices if d.posted) + 1}"
    assert invoice.amount_including_tax == Decimal("1200.00") == invoice.remaining_amount
    assert book.balance_of(AccountRole.RECEIVABLES) == seeded.balance_of(AccountRole.RECEIVABLES) + Decimal("1200.00")
    assert book.ytd_sales_excluding_tax == seeded.ytd_sales_excluding_tax + invoice.amount_excluding_tax
    assert book.balance_of(AccountRole.OUTPUT_TAX) == seeded.balance_of(AccountRole.OUTPUT_TAX) - invoice.tax_amount
    assert invoice in sales_invoices_due_next_week(book)
    assert customer_totals(book)[customer.number].balance == customer_totals(seeded)[customer.number].balance + Decimal(
        "1200.00"
    )
    assert cash_flow_forecast(book)[1][0].receipts == cash_flow_forecast(seeded)[1][0].receipts + Decimal("1200.00")
    assert _posting_total(book) == 0
    assert sum(Decimal(r["balanceAtDateDebit"].replace(",", "") or 0) for r in _trial(book)) == sum(
        Decimal(r["balanceAtDateCredit"].replace(",", "") or 0) for r in _trial(book)
    )
    _receivables_agree(book)
    _entries_sum_to_balances(book)
    # BC posts the invoice and G/L entries; the customer record itself does not change.
    assert {(c.entity_set, c.change_type) for c in result.record_changes} == {
        (SALES_INVOICES, ChangeType.CREATED),
        (GENERAL_LEDGER_ENTRIES, ChangeType.CREATED),
    }
    # The seeded book is untouched.
    assert build_book(company, BUSINESS_DATE) == seeded


def _trial(book: CompanyBook) -> list[dict[str, str]]:
    rows = trial_balance_records(book, BUSINESS_DATE)
    return [{k: str(v) for k, v in r.items()} for r in rows if r["accountType"] == "Posting"]


def test_payments_lower_the_remaining_amount_until_the_invoice_is_paid() -> None:
    seeded = build_book(_company(), BUSINESS_DATE)
    overdue = next(d for d in open_sales_invoices(seeded) if d.due_date < BUSINESS_DATE)
    half = (overdue.remaining_amount / 2).quantize(Decimal("0.01"))
    first = register_customer_payment(seeded, CompanyChanges(), overdue.number, half, AT)
    partly = apply_changes(seeded, first.changes)
    assert partly.balance_of(AccountRole.CASH) == cash_balance(seeded) + half
    assert overdue_sales_amount(partly) == overdue_sales_amount(seeded) - half
    second = register_customer_payment(partly, first.changes, str(overdue.id), overdue.remaining_amount - half, AT)
    paid = apply_changes(seeded, second.changes)
    invoice = next(d for d in paid.sales_invoices if d.id == overdue.id)
    assert invoice.status == InvoiceStatus.PAID and invoice.remaining_amount == 0
    assert invoice.closed_on == BUSINESS_DATE
    assert cash_balance(paid) == cash_balance(seeded) + overdue.remaining_amount
    assert overdue_sales_amount(paid) == overdue_sales_amount(seeded) - overdue.remaining_amount
    assert _posting_total(paid) == 0
    _receivables_agree(paid)
    _entries_sum_to_balances(paid)
    first_change = second.record_changes[0]
    assert (first_change.entity_set, first_change.change_type) == (SALES_INVOICES, ChangeType.UPDATED)
    with pytest.raises(BookChangeError, match="not an open posted invoice"):
        register_customer_payment(paid, second.changes, overdue.number, Decimal("1.00"), AT)


def test_overpaying_or_paying_a_draft_is_refused() -> None:
    seeded = build_book(_company(), BUSINESS_DATE)
    invoice = open_sales_invoices(seeded)[0]
    with pytest.raises(BookChangeError, match="more than"):
        register_customer_payment(seeded, CompanyChanges(), invoice.number, invoice.remaining_amount + 1, AT)
    draft = next(d for d in seeded.sales_invoices if not d.posted)
    with pytest.raises(BookChangeError):
        register_customer_payment(seeded, CompanyChanges(), draft.number, Decimal("1.00"), AT)
    with pytest.raises(BookChangeError, match="does not exist"):
        post_sales_invoice(seeded, CompanyChanges(), "C99999", Decimal("1.00"), BUSINESS_DATE, AT)


@pytest.mark.parametrize("tenant", [0, 1, 2])
def test_a_posted_purchase_invoice_moves_payables_and_balances(tenant: int) -> None:
    seeded = build_book(_company(tenant), BUSINESS_DATE)
    vendor = seeded.vendors[0]
    result = post_purchase_invoice(
        seeded, CompanyChanges(), vendor.number, Decimal("500.00"), BUSINESS_DATE - dt.timedelta(days=1), AT
    )
    book = apply_changes(seeded, result.changes)
    assert book.balance_of(AccountRole.PAYABLES) == seeded.balance_of(AccountRole.PAYABLES) - Decimal("500.00")
    assert vendor_balances(book)[vendor.number] == vendor_balances(seeded)[vendor.number] + Decimal("500.00")
    assert _posting_total(book) == 0
    _receivables_agree(book)
    _entries_sum_to_balances(book)
    assert (PURCHASE_INVOICES, ChangeType.CREATED) in {(c.entity_set, c.change_type) for c in result.record_changes}


def test_bank_transfers_make_many_entries_and_keep_the_cash_balance() -> None:
    seeded = build_book(_company(), BUSINESS_DATE)
    result = post_bank_transfers(seeded, CompanyChanges(), 30, Decimal("2.50"), AT)
    book = apply_changes(seeded, result.changes)
    assert len(result.record_changes) == 60
    assert len({c.record_id for c in result.record_changes}) == 60
    assert cash_balance(book) == cash_balance(seeded)
    _entries_sum_to_balances(book)
    numbers = [r["entryNumber"] for r in general_ledger_entry_records(book, BUSINESS_DATE)]
    assert numbers == list(range(1, len(numbers) + 1))


def test_book_changes_cache_follows_each_change() -> None:
    company = _company()
    changes = BookChanges()
    seeded = changes.book(company, BUSINESS_DATE)
    version = changes.version
    result = post_bank_transfers(seeded, changes.of(company.id), 1, Decimal("1.00"), AT)
    changes.record(company.id, result.changes)
    assert changes.version > version
    assert len(changes.book(company, BUSINESS_DATE).posted_entries) == 2
    changes.clear()
    assert changes.book(company, BUSINESS_DATE) is seeded
