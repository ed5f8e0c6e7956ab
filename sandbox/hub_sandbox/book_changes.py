"""Changes made to a company's books at run time (admin API), laid over the seeded book.

A seeded :class:`~hub_sandbox.seed.CompanyBook` is immutable and deterministic; it stays
so. What a test or a demo posts (a sales invoice, a customer payment, a purchase invoice,
bank transfers) is kept per company as a :class:`CompanyChanges`: the documents it added
or changed and the G/L entries it posted. :func:`apply_changes` lays them over the seeded
book, giving a book of the same shape, so every reader (API v2.0 entities, cues, figures,
reports, the web client) sees the same changed book:

- a posted sales invoice debits receivables and credits product sales and output tax;
- a customer payment debits the first cash account and credits receivables, and lowers
  the invoice's ``remainingAmount`` (status Paid at zero);
- a posted sales credit memo, refunded at once (status Paid), debits product sales and
  output tax and credits the first cash account;
- a posted purchase invoice credits payables and debits cost of materials and input tax
  (sales-tax countries keep no input tax: the tax is part of the cost);
- a bank transfer moves money between two cash accounts (the cash balance stays).

Every posting balances, so the trial balance still sums to zero. Each operation also
returns the :class:`RecordChange` list BC's webhooks would notify: in BC posting writes
G/L entries and the posted document; it does not modify the customer or vendor record
(their balances are FlowFields), so neither is reported as changed.

Pure functions and frozen values; :class:`BookChanges` holds one immutable
:class:`CompanyChanges` per company and swaps it whole, so readers on other threads
always see a consistent set.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from hub_sandbox.documents import (
    CreditMemoStatus,
    CustomerBlocked,
    Document,
    DocumentKind,
    InvoiceStatus,
    OpenItem,
    Party,
    SalesLine,
    VendorBlocked,
)
from hub_sandbox.seed import (
    AccountRole,
    AccountType,
    CompanyBook,
    GLAccount,
    GLDocumentType,
    GLEntry,
    company_book,
    with_totals,
)
from hub_sandbox.tenants import SandboxCompany

CENT = Decimal("0.01")

SALES_INVOICES = "salesInvoices"
SALES_CREDIT_MEMOS = "salesCreditMemos"
PURCHASE_INVOICES = "purchaseInvoices"
GENERAL_LEDGER_ENTRIES = "generalLedgerEntries"


class ChangeType(StrEnum):
    """The changeType of a BC webhook notification (``collection`` is made when sending)."""

    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


@dataclass(frozen=True)
class RecordChange:
    """A record of an API v2.0 entity set that changed: what a webhook notice is about."""

    company_id: uuid.UUID
    entity_set: str
    record_id: uuid.UUID
    change_type: ChangeType
    last_modified: dt.datetime


@dataclass(frozen=True)
class CompanyChanges:
    """Everything posted at run time in one company. Never mutated: operations return a
    new value."""

    # Added documents and new versions of seeded ones, by document id.
    documents: tuple[tuple[uuid.UUID, Document], ...] = ()
    gl_entries: tuple[GLEntry, ...] = ()

    def document(self, document_id: uuid.UUID) -> Document | None:
        return next((d for i, d in self.documents if i == document_id), None)

    def with_document(self, document: Document) -> CompanyChanges:
        kept = tuple((i, d) for i, d in self.documents if i != document.id)
        return dataclasses.replace(self, documents=(*kept, (document.id, document)))


class BookChangeError(ValueError):
    """An operation the books refuse (unknown customer, overpayment, ...): HTTP 422."""


# ---------------------------------------------------------------------------------------
# Laying changes over a seeded book
# ---------------------------------------------------------------------------------------


def apply_changes(book: CompanyBook, changes: CompanyChanges) -> CompanyBook:
    """The seeded book with the run-time changes applied (the same book when there are none)."""
    if not changes.documents and not changes.gl_entries:
        return book
    replaced = dict(changes.documents)

    def merged(seeded: tuple[Document, ...], kind: DocumentKind) -> tuple[Document, ...]:
        seeded_ids = {d.id for d in seeded}
        added = [d for i, d in changes.documents if d.kind is kind and i not in seeded_ids]
        return tuple(sorted([replaced.get(d.id, d) for d in seeded] + added, key=lambda d: d.number))

    sales = merged(book.documents.sales_invoices, DocumentKind.SALES_INVOICE)
    credit_memos = merged(book.documents.sales_credit_memos, DocumentKind.SALES_CREDIT_MEMO)
    purchases = merged(book.documents.purchase_invoices, DocumentKind.PURCHASE_INVOICE)
    today = book.business_date
    documents = dataclasses.replace(
        book.documents,
        sales_invoices=sales,
        sales_credit_memos=credit_memos,
        purchase_invoices=purchases,
        open_receivables=tuple(
            OpenItem(d.remaining_amount, (d.due_date - today).days) for d in sales if d.is_open_posted_invoice
        ),
        open_payables=tuple(
            OpenItem(d.amount_including_tax, (d.due_date - today).days) for d in purchases if d.is_open_posted_invoice
        ),
    )
    moved: dict[uuid.UUID, Decimal] = defaultdict(Decimal)
    for entry in changes.gl_entries:
        moved[entry.account_id] += entry.amount
    accounts = [
        dataclasses.replace(a, net_change=a.net_change + moved[a.id])
        if a.account_type is AccountType.POSTING and a.id in moved
        else a
        for a in book.accounts
    ]
    return dataclasses.replace(
        book, documents=documents, accounts=tuple(with_totals(accounts)), posted_entries=changes.gl_entries
    )


# ---------------------------------------------------------------------------------------
# Operations
# ---------------------------------------------------------------------------------------


@dataclass
class _Posting:
    """G/L lines of one posting being assembled; they must balance."""

    book: CompanyBook
    changes: CompanyChanges
    at: dt.datetime
    document_type: GLDocumentType
    document_number: str
    description: str
    lines: list[tuple[GLAccount, Decimal]] = field(default_factory=list)

    def add(self, account: GLAccount, amount: Decimal) -> None:
        if amount:
            self.lines.append((account, amount))

    def entries(self) -> tuple[GLEntry, ...]:
        if sum((amount for _, amount in self.lines), Decimal(0)) != 0:
            raise AssertionError("a posting must balance")
        first = len(self.book.opening_balances()) + len(self.changes.gl_entries) + 1
        return tuple(
            GLEntry(
                id=uuid.uuid5(self.book.company.id, f"generalLedgerEntry/{first + n}"),
                entry_number=first + n,
                posting_date=self.book.business_date,
                document_type=self.document_type,
                document_number=self.document_number,
                account_id=account.id,
                account_number=account.number,
                description=self.description,
                amount=amount,
                last_modified=self.at,
            )
            for n, (account, amount) in enumerate(self.lines)
        )


@dataclass(frozen=True)
class PostingResult:
    changes: CompanyChanges
    record_changes: tuple[RecordChange, ...]
    document: Document | None = None


def _account(book: CompanyBook, role: AccountRole, *, index: int = 0) -> GLAccount:
    usable = [a for a in book.accounts_with_role(role) if a.account_type is AccountType.POSTING and not a.blocked]
    if len(usable) <= index:
        raise BookChangeError(f"The company has no account for {role.value}.")
    return usable[index]


def _split(company: SandboxCompany, including_tax: Decimal) -> tuple[Decimal, Decimal]:
    rate = company.locale.tax_rate / 100
    excluding = (including_tax / (1 + rate)).quantize(CENT, ROUND_HALF_UP)
    return excluding, including_tax - excluding


def _money(amount: Decimal) -> Decimal:
    if amount != amount.quantize(CENT) or amount <= 0:
        raise BookChangeError(f"The amount {amount} must be positive, to the cent.")
    return amount


def _next_number(documents: tuple[Document, ...], prefix: str, first: int) -> str:
    numbers = [int(d.number[len(prefix) :]) for d in documents if d.posted and d.number.startswith(prefix)]
    return f"{prefix}{max(numbers, default=first - 1) + 1}"


def _gl_record_changes(company_id: uuid.UUID, entries: tuple[GLEntry, ...]) -> list[RecordChange]:
    return [
        RecordChange(company_id, GENERAL_LEDGER_ENTRIES, e.id, ChangeType.CREATED, e.last_modified) for e in entries
    ]


def _posted_invoice(
    book: CompanyBook,
    kind: DocumentKind,
    party: Party,
    number: str,
    amount_including_tax: Decimal,
    due_date: dt.date,
    at: dt.datetime,
) -> Document:
    excluding, tax = _split(book.company, amount_including_tax)
    return Document(
        kind=kind,
        id=uuid.uuid5(book.company.id, f"{kind.value}/posted/{number}"),
        number=number,
        party=party,
        document_date=book.business_date,
        posting_date=book.business_date,
        due_date=due_date,
        amount_excluding_tax=excluding,
        tax_amount=tax,
        remaining_amount=amount_including_tax,
        status=InvoiceStatus.OPEN,
        posted=True,
        closed_on=None,
        sales_line=SalesLine.PRODUCTS,
        external_number="",
        last_modified=at,
    )


def _posted(
    book: CompanyBook,
    changes: CompanyChanges,
    posting: _Posting,
    document: Document,
    entity: str,
    change: ChangeType,
    at: dt.datetime,
) -> PostingResult:
    """The document and the posting's G/L entries joined to the changes, with the record
    changes BC notifies subscribers of: the document's, then each entry's."""
    entries = posting.entries()
    updated = dataclasses.replace(changes.with_document(document), gl_entries=changes.gl_entries + entries)
    notices = (
        RecordChange(book.company.id, entity, document.id, change, at),
        *_gl_record_changes(book.company.id, entries),
    )
    return PostingResult(updated, notices, document)


def post_sales_invoice(
    book: CompanyBook,
    changes: CompanyChanges,
    customer_number: str,
    amount_including_tax: Decimal,
    due_date: dt.date,
    at: dt.datetime,
) -> PostingResult:
    """Post a sales invoice (status Open) to a customer; ``book`` already has ``changes``."""
    customer = next((c for c in book.customers if c.number == customer_number), None)
    if customer is None:
        raise BookChangeError(f"The customer '{customer_number}' does not exist.")
    if customer.blocked in (CustomerBlocked.INVOICE, CustomerBlocked.ALL):
        raise BookChangeError(f"The customer '{customer_number}' is blocked for invoicing.")
    number = _next_number(book.sales_invoices, "PSI", 103001)
    invoice = _posted_invoice(
        book, DocumentKind.SALES_INVOICE, customer, number, _money(amount_including_tax), due_date, at
    )
    posting = _Posting(book, changes, at, GLDocumentType.INVOICE, number, f"Invoice {number}")
    posting.add(_account(book, AccountRole.RECEIVABLES), invoice.amount_including_tax)
    posting.add(_account(book, AccountRole.PRODUCT_SALES), -invoice.amount_excluding_tax)
    posting.add(_account(book, AccountRole.OUTPUT_TAX), -invoice.tax_amount)
    return _posted(book, changes, posting, invoice, SALES_INVOICES, ChangeType.CREATED, at)


def post_sales_credit_memo(
    book: CompanyBook,
    changes: CompanyChanges,
    customer_number: str,
    amount_including_tax: Decimal,
    at: dt.datetime,
) -> PostingResult:
    """Post a sales credit memo to a customer and refund it from the first cash account
    (status Paid): sales this month fall by its amount excluding tax."""
    customer = next((c for c in book.customers if c.number == customer_number), None)
    if customer is None:
        raise BookChangeError(f"The customer '{customer_number}' does not exist.")
    if customer.blocked == CustomerBlocked.ALL:
        raise BookChangeError(f"The customer '{customer_number}' is blocked.")
    number = _next_number(book.sales_credit_memos, "PSCM", 104001)
    excluding, tax = _split(book.company, _money(amount_including_tax))
    memo = Document(
        kind=DocumentKind.SALES_CREDIT_MEMO,
        id=uuid.uuid5(book.company.id, f"{DocumentKind.SALES_CREDIT_MEMO.value}/posted/{number}"),
        number=number,
        party=customer,
        document_date=book.business_date,
        posting_date=book.business_date,
        due_date=book.business_date,
        amount_excluding_tax=excluding,
        tax_amount=tax,
        remaining_amount=Decimal(0),
        status=CreditMemoStatus.PAID,
        posted=True,
        closed_on=book.business_date,
        sales_line=SalesLine.PRODUCTS,
        external_number="",
        last_modified=at,
    )
    posting = _Posting(book, changes, at, GLDocumentType.CREDIT_MEMO, number, f"Credit Memo {number}")
    posting.add(_account(book, AccountRole.PRODUCT_SALES), memo.amount_excluding_tax)
    posting.add(_account(book, AccountRole.OUTPUT_TAX), memo.tax_amount)
    posting.add(_account(book, AccountRole.CASH), -memo.amount_including_tax)
    return _posted(book, changes, posting, memo, SALES_CREDIT_MEMOS, ChangeType.CREATED, at)


def register_customer_payment(
    book: CompanyBook,
    changes: CompanyChanges,
    invoice_reference: str,
    amount: Decimal,
    at: dt.datetime,
) -> PostingResult:
    """A customer pays (part of) an open posted sales invoice, found by id or number."""
    invoice = next(
        (d for d in book.sales_invoices if invoice_reference in (str(d.id), d.number)),
        None,
    )
    if invoice is None:
        raise BookChangeError(f"The sales invoice '{invoice_reference}' does not exist.")
    if not invoice.is_open_posted_invoice:
        raise BookChangeError(f"The sales invoice '{invoice.number}' is not an open posted invoice.")
    paid = _money(amount)
    if paid > invoice.remaining_amount:
        raise BookChangeError(
            f"The payment {paid} is more than the {invoice.remaining_amount} that remains on '{invoice.number}'."
        )
    remaining = invoice.remaining_amount - paid
    updated_invoice = dataclasses.replace(
        invoice,
        remaining_amount=remaining,
        # A corrective invoice stays Corrective, paid or not (BC's invoice aggregate).
        status=invoice.status
        if invoice.status == InvoiceStatus.CORRECTIVE
        else (InvoiceStatus.PAID if remaining == 0 else InvoiceStatus.OPEN),
        closed_on=book.business_date if remaining == 0 else None,
        last_modified=at,
    )
    payment_number = f"PMT{len([e for e in changes.gl_entries if e.document_type is GLDocumentType.PAYMENT]) + 1:05d}"
    posting = _Posting(book, changes, at, GLDocumentType.PAYMENT, payment_number, f"Payment {invoice.number}")
    posting.add(_account(book, AccountRole.CASH), paid)
    posting.add(_account(book, AccountRole.RECEIVABLES), -paid)
    return _posted(book, changes, posting, updated_invoice, SALES_INVOICES, ChangeType.UPDATED, at)


def post_purchase_invoice(
    book: CompanyBook,
    changes: CompanyChanges,
    vendor_number: str,
    amount_including_tax: Decimal,
    due_date: dt.date,
    at: dt.datetime,
) -> PostingResult:
    """Post a purchase invoice (status Open) from a vendor."""
    vendor = next((v for v in book.vendors if v.number == vendor_number), None)
    if vendor is None:
        raise BookChangeError(f"The vendor '{vendor_number}' does not exist.")
    if vendor.blocked == VendorBlocked.ALL:
        raise BookChangeError(f"The vendor '{vendor_number}' is blocked.")
    number = _next_number(book.purchase_invoices, "PPI", 108001)
    invoice = _posted_invoice(
        book, DocumentKind.PURCHASE_INVOICE, vendor, number, _money(amount_including_tax), due_date, at
    )
    posting = _Posting(book, changes, at, GLDocumentType.INVOICE, number, f"Invoice {number}")
    posting.add(_account(book, AccountRole.PAYABLES), -invoice.amount_including_tax)
    if book.accounts_with_role(AccountRole.INPUT_TAX):
        posting.add(_account(book, AccountRole.INPUT_TAX), invoice.tax_amount)
        posting.add(_account(book, AccountRole.COST_OF_GOODS_SOLD), invoice.amount_excluding_tax)
    else:
        # Sales tax paid on purchases is not reclaimed: it is part of the cost.
        posting.add(_account(book, AccountRole.COST_OF_GOODS_SOLD), invoice.amount_including_tax)
    return _posted(book, changes, posting, invoice, PURCHASE_INVOICES, ChangeType.CREATED, at)


def post_bank_transfers(
    book: CompanyBook, changes: CompanyChanges, count: int, amount: Decimal, at: dt.datetime
) -> PostingResult:
    """``count`` transfers of ``amount`` from the second cash account to the first: two
    G/L entries each, the cash balance unchanged (many changes at once, for the
    ``collection`` notice)."""
    if count < 1:
        raise BookChangeError("At least one transfer is needed.")
    money = _money(amount)
    to_account, from_account = _account(book, AccountRole.CASH), _account(book, AccountRole.CASH, index=1)
    entries: tuple[GLEntry, ...] = ()
    for n in range(count):
        current = dataclasses.replace(changes, gl_entries=changes.gl_entries + entries)
        number = f"BT{len(changes.gl_entries) // 2 + n + 1:05d}"
        posting = _Posting(book, current, at, GLDocumentType.BLANK, number, "Transfer between bank accounts")
        posting.add(to_account, money)
        posting.add(from_account, -money)
        entries += posting.entries()
    updated = dataclasses.replace(changes, gl_entries=changes.gl_entries + entries)
    return PostingResult(updated, tuple(_gl_record_changes(book.company.id, entries)))


# ---------------------------------------------------------------------------------------
# Per-company changes of one sandbox process
# ---------------------------------------------------------------------------------------

# Changed books are rebuilt from the seeded one when their changes or date change.
_CHANGED_BOOK_CACHE_SIZE = 256


class BookChanges:
    """The run-time changes of every company, and the books with them applied.

    ``version`` grows with every change, so caches of answers (memoized answers) can
    tell a changed book from the one they remembered.
    """

    def __init__(self) -> None:
        self._changes: dict[uuid.UUID, CompanyChanges] = {}
        self._books: dict[tuple[uuid.UUID, dt.date, int], CompanyBook] = {}
        self._lock = threading.Lock()
        self.version = 0

    def of(self, company_id: uuid.UUID) -> CompanyChanges:
        return self._changes.get(company_id, CompanyChanges())

    def book(self, company: SandboxCompany, business_date: dt.date) -> CompanyBook:
        """The company's book on a business date with every change made so far."""
        seeded = company_book(company, business_date)
        changes = self._changes.get(company.id)
        if changes is None:
            return seeded
        key = (company.id, business_date, self.version)
        book = self._books.get(key)
        if book is None:
            book = apply_changes(seeded, changes)
            with self._lock:
                if len(self._books) >= _CHANGED_BOOK_CACHE_SIZE:
                    self._books.clear()
                self._books[key] = book
        return book

    def record(self, company_id: uuid.UUID, changes: CompanyChanges) -> None:
        with self._lock:
            self._changes[company_id] = changes
            self.version += 1

    def clear(self) -> None:
        with self._lock:
            self._changes.clear()
            self._books.clear()
            self.version += 1
