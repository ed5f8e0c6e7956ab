"""Every figure of one company, from what BC returned for it: pure functions, no I/O.

The inputs are BC's records, parsed and validated (``CompanyRecords``), the cue services'
figures where they are published, today, the time of the read and the client's override of
the tax rule; the output is the snapshot's figures. hub_fetcher.refresh does the reading;
the rules of each figure live beside this module (cash, documents, taxes).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hub_common.events import CompanyFigures
from hub_fetcher.bc.entities import (
    Account,
    CustomerSale,
    GeneralLedgerSetup,
    PurchaseInvoice,
    SalesDocumentEntity,
    SalesInvoice,
    parse_entities,
)
from hub_fetcher.figures import documents
from hub_fetcher.figures.cash import cash_from_accounts
from hub_fetcher.figures.currencies import UNCONVERTED, ToLocalCurrency
from hub_fetcher.figures.documents import OpenItem
from hub_fetcher.figures.taxes import taxes_due

# Web client page ids of the documents the details pane links to.
POSTED_SALES_INVOICE_PAGE = 132
POSTED_PURCHASE_INVOICE_PAGE = 138

# A link into the client's BC web client: (page id, document number) -> URL.
DocumentLink = Callable[[int, str], str]


@dataclass(frozen=True)
class CompanyRecords:
    """What one company's batch read returned, entity by entity (empty books by default)."""

    setup: Sequence[GeneralLedgerSetup] = ()
    accounts: Sequence[Account] = ()
    # Posted invoices with status Open, and the purchase invoices likewise.
    open_sales_invoices: Sequence[SalesInvoice] = ()
    open_purchase_invoices: Sequence[PurchaseInvoice] = ()
    # Sales invoices not posted yet (Draft, In Review).
    unposted_sales_invoices: Sequence[SalesDocumentEntity] = ()
    # Each customer's sales (the ledger's invoices less its credit memos, in the company's
    # currency) posted from the first of the month to today.
    customer_sales_this_month: Sequence[CustomerSale] = ()
    sales_orders: Sequence[SalesDocumentEntity] = ()
    sales_quotes: Sequence[SalesDocumentEntity] = ()

    @classmethod
    def parse(cls, collections: Mapping[str, list[dict[str, Any]]]) -> CompanyRecords:
        """Each answer of the batch (keyed as hub_fetcher.refresh.company_requests names
        them) validated as its entity; a wrong shape is a BAD_RESPONSE failure."""
        return cls(
            setup=parse_entities(GeneralLedgerSetup, collections["setup"], "generalLedgerSetup"),
            accounts=parse_entities(Account, collections["accounts"], "accounts"),
            open_sales_invoices=parse_entities(SalesInvoice, collections["open_sales_invoices"], "salesInvoices"),
            open_purchase_invoices=parse_entities(
                PurchaseInvoice, collections["open_purchase_invoices"], "purchaseInvoices"
            ),
            unposted_sales_invoices=parse_entities(
                SalesDocumentEntity, collections["unposted_sales_invoices"], "salesInvoices"
            ),
            customer_sales_this_month=parse_entities(
                CustomerSale, collections["customer_sales_this_month"], "customerSales"
            ),
            sales_orders=parse_entities(SalesDocumentEntity, collections["sales_orders"], "salesOrders"),
            sales_quotes=parse_entities(SalesDocumentEntity, collections["sales_quotes"], "salesQuotes"),
        )


@dataclass(frozen=True)
class CueFigures:
    """What BC's Accountant Portal cue services know better than API v2.0 can tell."""

    cash_accounts_balance: Decimal
    overdue_sales_amount: Decimal
    overdue_purchase_amount: Decimal


@dataclass(frozen=True)
class ChosenAccounts:
    """G/L accounts a client card names for a figure, in place of the hub's rule (None: the rule)."""

    taxes: frozenset[str] | None = None
    cash: frozenset[str] | None = None
    # Which of the card's choices these are (the registry counts each change).
    revision: int = 0

    @classmethod
    def of(cls, *, taxes: list[str] | None, cash: list[str] | None, revision: int = 0) -> ChosenAccounts:
        # BC keeps an account's number (a Code field) in capitals, whatever was typed: a card
        # naming "vat-out" means VAT-OUT.
        return cls(
            taxes=frozenset(number.upper() for number in taxes) if taxes else None,
            cash=frozenset(number.upper() for number in cash) if cash else None,
            revision=revision,
        )


BY_RULE = ChosenAccounts()


def local_currency(records: CompanyRecords) -> str:
    """The company's LCY code, in which every amount is; empty when BC has no setup to say."""
    return records.setup[0].local_currency_code if records.setup else ""


def receivables(records: CompanyRecords, to_local: ToLocalCurrency = UNCONVERTED) -> list[OpenItem]:
    """Open posted sales invoices with a due date, and corrective ones not paid yet (BC
    gives a corrective invoice that status whether it is paid or not); what is owed is their
    remaining amount, in the company's currency."""
    return [
        OpenItem(
            invoice.number,
            invoice.customer_name,
            invoice.due_date,
            to_local(invoice.remaining_amount, invoice.currency_code),
        )
        for invoice in records.open_sales_invoices
        if invoice.due_date is not None
        and (
            invoice.status == documents.OPEN
            or (invoice.status == documents.CORRECTIVE and invoice.remaining_amount != 0)
        )
    ]


def payables(records: CompanyRecords, to_local: ToLocalCurrency = UNCONVERTED) -> list[OpenItem]:
    """Open posted purchase invoices with a due date; API v2.0 gives them no remaining
    amount, so what is owed is their total including tax, in the company's currency."""
    return [
        OpenItem(
            invoice.number,
            invoice.vendor_name,
            invoice.due_date,
            to_local(invoice.total_including_tax, invoice.currency_code),
        )
        for invoice in records.open_purchase_invoices
        if invoice.status == documents.OPEN and invoice.due_date is not None
    ]


def company_figures(
    records: CompanyRecords,
    *,
    today: dt.date,
    read_at: dt.datetime,
    document_link: DocumentLink,
    cues: CueFigures | None = None,
    chosen_accounts: ChosenAccounts = BY_RULE,
    to_local: ToLocalCurrency = UNCONVERTED,
) -> CompanyFigures:
    """Every figure of the architecture's table, from one company's records; documents in
    another currency than the company's count in it (``to_local``)."""
    owed_to_company = receivables(records, to_local)
    owed_by_company = payables(records, to_local)

    cash = cash_from_accounts(records.accounts, read_at, account_numbers=chosen_accounts.cash)
    overdue_sales = documents.overdue(
        owed_to_company,
        today=today,
        basis="remaining_amount",
        link=lambda item: document_link(POSTED_SALES_INVOICE_PAGE, item.number),
        read_at=read_at,
    )
    overdue_purchases = documents.overdue(
        owed_by_company,
        today=today,
        basis="total_including_tax",
        link=lambda item: document_link(POSTED_PURCHASE_INVOICE_PAGE, item.number),
        read_at=read_at,
    )
    if cues is not None:
        # BC's own definitions: its "Cash Accounts" (which API v2.0 does not expose) and
        # the remaining amounts of vendor ledger entries (purchase invoices have none).
        # Accounts the client card names are what the accountant chose, so they stay.
        if chosen_accounts.cash is None:
            cash = cash.model_copy(update={"total": cues.cash_accounts_balance, "source": "cues"})
        overdue_sales = overdue_sales.model_copy(update={"total": cues.overdue_sales_amount})
        overdue_purchases = overdue_purchases.model_copy(
            update={"total": cues.overdue_purchase_amount, "amount_basis": "remaining_amount"}
        )

    return CompanyFigures(
        cash=cash,
        overdue_sales_invoices=overdue_sales,
        overdue_purchase_invoices=overdue_purchases,
        purchase_invoices_due_next_week=documents.due_next_week(owed_by_company, today=today, read_at=read_at),
        open_sales_documents=documents.open_sales_documents(
            quotes=[
                documents.SalesDocument(q.status, to_local(q.total_including_tax, q.currency_code))
                for q in records.sales_quotes
            ],
            orders=[
                documents.SalesDocument(o.status, to_local(o.total_including_tax, o.currency_code))
                for o in records.sales_orders
            ],
            unposted_invoices=[
                documents.SalesDocument(i.status, to_local(i.total_including_tax, i.currency_code))
                for i in records.unposted_sales_invoices
            ],
            read_at=read_at,
        ),
        taxes_due=taxes_due(records.accounts, read_at=read_at, account_numbers=chosen_accounts.taxes),
        sales_this_month=documents.sales_this_month(
            [sale.total_sales_amount for sale in records.customer_sales_this_month], read_at=read_at
        ),
        cash_flow_forecast=documents.cash_flow_forecast(
            opening_cash=cash.total,
            receivables=owed_to_company,
            payables=owed_by_company,
            today=today,
            read_at=read_at,
        ),
    )
