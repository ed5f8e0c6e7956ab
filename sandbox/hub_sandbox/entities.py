"""The API v2.0 entities the sandbox serves: their properties (real BC names and types)
and how a company's seeded book becomes records.

Adding an entity means: one :class:`EntityType`, one function from book and query options
to records, one entry in :data:`COMPANY_ENTITY_SETS`. Report entities (aged, statements,
trial balance) take their parameters from ``$filter``, as BC's report pages do.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from hub_sandbox.documents import (
    BLANK_GUID,
    CreditMemoStatus,
    CustomerBlocked,
    Document,
    InvoiceStatus,
    Party,
    SalesOrderStatus,
    SalesQuoteStatus,
    VendorBlocked,
)
from hub_sandbox.exchange_rates import rate_rows
from hub_sandbox.figures import customer_sales, customer_totals, vendor_balances
from hub_sandbox.odata import (
    EdmType,
    EntityType,
    Property,
    QueryOptions,
    Record,
    Value,
    top_level_comparisons,
)
from hub_sandbox.reports import (
    DEFAULT_PERIOD_LENGTH,
    StatementLine,
    aged_payables_records,
    aged_receivables_records,
    balance_sheet_lines,
    cash_flow_statement_lines,
    income_statement_lines,
    retained_earnings_lines,
    statement_records,
    trial_balance_records,
)
from hub_sandbox.seed import AccountCategory, AccountType, CompanyBook, GLAccount, GLDocumentType
from hub_sandbox.tenants import SYSTEM_VERSION, SandboxCompany

# Short names keep the property tables below readable.
S, G, D = EdmType.STRING, EdmType.GUID, EdmType.DECIMAL
BOOL, DATE, DATETIME, INT64 = EdmType.BOOLEAN, EdmType.DATE, EdmType.DATETIME, EdmType.INT64
INT32 = EdmType.INT32

# BC writes an unset date as 0001-01-01 and an unset datetime as 0001-01-01T00:00:00Z.
BLANK_DATE = dt.date(1, 1, 1)
BLANK_DATETIME = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
# genJournalDocumentType members, in BC's order.
GL_DOCUMENT_TYPES = (
    "_x0020_", "Payment", "Invoice", "Credit_x0020_Memo", "Finance_x0020_Charge_x0020_Memo", "Reminder", "Refund",
)  # fmt: skip
# The "user" that created demo companies: BC's system user id.
SYSTEM_USER_ID = uuid.UUID("00000000-0000-0000-0000-000000000001")


def _props(*pairs: tuple[str, EdmType]) -> tuple[Property, ...]:
    return tuple(Property(name, edm_type) for name, edm_type in pairs)


COMPANY = EntityType(
    name="company",
    entity_set="companies",
    properties=_props(
        ("id", G), ("systemVersion", S), ("timestamp", INT64), ("name", S), ("displayName", S),
        ("businessProfileId", S), ("systemCreatedAt", DATETIME), ("systemCreatedBy", G),
        ("systemModifiedAt", DATETIME), ("systemModifiedBy", G),
    ),
)  # fmt: skip

COMPANY_INFORMATION = EntityType(
    name="companyInformation",
    entity_set="companyInformation",
    properties=_props(
        ("id", G), ("displayName", S), ("addressLine1", S), ("addressLine2", S), ("city", S),
        ("state", S), ("country", S), ("postalCode", S), ("phoneNumber", S), ("faxNumber", S),
        ("email", S), ("website", S), ("taxRegistrationNumber", S), ("currencyCode", S),
        ("currentFiscalYearStartDate", DATE), ("industry", S), ("experience", S),
        ("lastModifiedDateTime", DATETIME),
    ),
)  # fmt: skip

GENERAL_LEDGER_SETUP = EntityType(
    name="generalLedgerSetup",
    entity_set="generalLedgerSetup",
    properties=_props(
        ("id", G), ("allowPostingFrom", DATE), ("allowPostingTo", DATE),
        ("additionalReportingCurrency", S), ("localCurrencyCode", S),
        ("localCurrencySymbol", S), ("lastModifiedDateTime", DATETIME),
        ("allowQueryFromConsolidation", BOOL),
        *((f"shortcutDimension{n}Code", S) for n in range(1, 9)),
    ),
)  # fmt: skip

ACCOUNTING_PERIOD = EntityType(
    name="accountingPeriod",
    entity_set="accountingPeriods",
    properties=_props(
        ("id", G), ("startingDate", DATE), ("name", S), ("newFiscalYear", BOOL), ("closed", BOOL),
        ("dateLocked", BOOL), ("lastModifiedDateTime", DATETIME),
    ),
)  # fmt: skip

ACCOUNT = EntityType(
    name="account",
    entity_set="accounts",
    properties=(
        Property("id", G),
        Property("number", S),
        Property("displayName", S),
        Property("category", EdmType.ENUM, "glAccountCategory", tuple(AccountCategory)),
        Property("subCategory", S),
        Property("blocked", BOOL),
        Property("accountType", EdmType.ENUM, "glAccountType", tuple(AccountType)),
        Property("directPosting", BOOL),
        Property("netChange", D),
        Property("consolidationTranslationMethod", S),
        Property("consolidationDebitAccount", S),
        Property("consolidationCreditAccount", S),
        Property("excludeFromConsolidation", BOOL),
        Property("lastModifiedDateTime", DATETIME),
    ),
)


def company_record(company: SandboxCompany, system_version: str = SYSTEM_VERSION) -> Record:
    created = company.created_at
    return {
        "id": company.id,
        "systemVersion": system_version,
        # A row version: grows with every change, like SQL's timestamp column BC exposes.
        "timestamp": int(created.timestamp()) % 100_000 + 1_000,
        "name": company.name,
        "displayName": company.display_name,
        "businessProfileId": "",
        "systemCreatedAt": created,
        "systemCreatedBy": SYSTEM_USER_ID,
        "systemModifiedAt": created,
        "systemModifiedBy": SYSTEM_USER_ID,
    }


def company_information_records(book: CompanyBook, business_date: dt.date) -> list[Record]:
    info = book.information
    return [
        {
            "id": info.id,
            "displayName": info.display_name,
            "addressLine1": info.address_line1,
            "addressLine2": info.address_line2,
            "city": info.city,
            "state": info.state,
            "country": info.country,
            "postalCode": info.postal_code,
            "phoneNumber": info.phone_number,
            "faxNumber": info.fax_number,
            "email": info.email,
            "website": info.website,
            "taxRegistrationNumber": info.tax_registration_number,
            "currencyCode": info.currency_code,
            # Demo companies keep calendar fiscal years.
            "currentFiscalYearStartDate": dt.date(business_date.year, 1, 1),
            "industry": info.industry,
            # The user experience the company runs ("Essential" for most SMB tenants).
            "experience": "Essential",
            "lastModifiedDateTime": info.last_modified,
        }
    ]


def general_ledger_setup_records(book: CompanyBook, business_date: dt.date) -> list[Record]:
    setup = book.ledger_setup
    record: dict[str, Value] = {
        "id": setup.id,
        "allowPostingFrom": BLANK_DATE,
        "allowPostingTo": BLANK_DATE,
        "additionalReportingCurrency": "",
        "localCurrencyCode": setup.local_currency_code,
        "localCurrencySymbol": setup.local_currency_symbol,
        "lastModifiedDateTime": setup.last_modified,
        "allowQueryFromConsolidation": False,
    }
    for n, code in enumerate(setup.shortcut_dimension_codes, start=1):
        record[f"shortcutDimension{n}Code"] = code
    return [record]


# The years of monthly periods a demo company has set up: two closed, the current, the next.
_PERIOD_YEARS_BEFORE, _PERIOD_YEARS_AHEAD = 2, 1


def accounting_period_records(book: CompanyBook, business_date: dt.date) -> list[Record]:
    """Monthly accounting periods, each year opened on its fiscal year's first day (demo
    companies keep calendar years), as "Create Fiscal Year" makes them; the years before
    the current one closed and date-locked."""
    first_year = book.fiscal_year_start.year - _PERIOD_YEARS_BEFORE
    records: list[Record] = []
    for year in range(first_year, book.fiscal_year_start.year + _PERIOD_YEARS_AHEAD + 1):
        closed = year < book.fiscal_year_start.year
        for month in range(1, 13):
            starting = dt.date(year, month, 1)
            records.append(
                {
                    "id": uuid.uuid5(book.company.id, f"accountingPeriod/{starting.isoformat()}"),
                    "startingDate": starting,
                    "name": starting.strftime("%B"),
                    "newFiscalYear": month == 1,
                    "closed": closed,
                    "dateLocked": closed,
                    "lastModifiedDateTime": dt.datetime(first_year, 1, 1, tzinfo=dt.UTC),
                }
            )
    return records


def account_records(book: CompanyBook, business_date: dt.date) -> list[Record]:
    return [
        {
            "id": account.id,
            "number": account.number,
            "displayName": account.display_name,
            "category": account.category.value,
            "subCategory": account.sub_category,
            "blocked": account.blocked,
            "accountType": account.account_type.value,
            "directPosting": account.direct_posting,
            "netChange": account.net_change,
            "consolidationTranslationMethod": "Average Rate (Manual)",
            "consolidationDebitAccount": "",
            "consolidationCreditAccount": "",
            "excludeFromConsolidation": False,
            "lastModifiedDateTime": account.last_modified,
        }
        for account in book.accounts
    ]


GENERAL_LEDGER_ENTRY = EntityType(
    name="generalLedgerEntry",
    entity_set="generalLedgerEntries",
    properties=(
        *_props(("id", G), ("entryNumber", INT32), ("postingDate", DATE), ("documentNumber", S)),
        Property("documentType", EdmType.ENUM, "genJournalDocumentType", GL_DOCUMENT_TYPES),
        *_props(
            ("accountId", G), ("accountNumber", S), ("description", S), ("debitAmount", D), ("creditAmount", D),
            ("additionalCurrencyDebitAmount", D), ("additionalCurrencyCreditAmount", D),
            ("lastModifiedDateTime", DATETIME),
        ),
    ),
)  # fmt: skip


def _gl_entry_record(
    entry_id: uuid.UUID,
    number: int,
    posted: dt.date,
    document_type: str,
    document_number: str,
    account: GLAccount,
    description: str,
    amount: Decimal,
    modified: dt.datetime,
) -> Record:
    return {
        "id": entry_id,
        "entryNumber": number,
        "postingDate": posted,
        "documentNumber": document_number,
        "documentType": document_type,
        "accountId": account.id,
        "accountNumber": account.number,
        "description": description,
        "debitAmount": amount if amount > 0 else Decimal(0),
        "creditAmount": -amount if amount < 0 else Decimal(0),
        "additionalCurrencyDebitAmount": Decimal(0),
        "additionalCurrencyCreditAmount": Decimal(0),
        "lastModifiedDateTime": modified,
    }


def general_ledger_entry_records(book: CompanyBook, business_date: dt.date) -> list[Record]:
    """The sandbox keeps balances, not a dated ledger: one opening entry per posting
    account carries its seeded balance (on the first day of the fiscal year, so the income
    accounts' year-to-date amounts fall in the year), then the entries posted at run time.
    Each account's entries sum to its netChange."""
    opened = dt.datetime.combine(book.fiscal_year_start, dt.time(0, 0), dt.UTC)
    records = [
        _gl_entry_record(
            uuid.uuid5(book.company.id, f"generalLedgerEntry/{number}"), number, book.fiscal_year_start,
            GLDocumentType.BLANK, "OPENING", account,
            "Opening balance" if account.number < "40000" else "Fiscal year to date", amount, opened,
        )
        for number, (account, amount) in enumerate(book.opening_balances(), start=1)
    ]  # fmt: skip
    by_id = {a.id: a for a in book.accounts}
    records += [
        _gl_entry_record(
            e.id, e.entry_number, e.posting_date, e.document_type, e.document_number, by_id[e.account_id],
            e.description, e.amount, e.last_modified,
        )
        for e in book.posted_entries
    ]  # fmt: skip
    return records


# -- customers and vendors --------------------------------------------------------------

_CONTACT_TYPE = ("Company", "Person")

CUSTOMER = EntityType(
    name="customer",
    entity_set="customers",
    properties=(
        *_props(("id", G), ("number", S), ("displayName", S)),
        Property("type", EdmType.ENUM, "contactType", _CONTACT_TYPE),
        *_props(
            ("addressLine1", S), ("addressLine2", S), ("city", S), ("state", S), ("country", S),
            ("postalCode", S), ("phoneNumber", S), ("email", S), ("website", S),
            ("salespersonCode", S), ("balanceDue", D), ("creditLimit", D), ("taxLiable", BOOL),
            ("taxAreaId", G), ("taxAreaDisplayName", S), ("taxRegistrationNumber", S),
            ("currencyId", G), ("currencyCode", S), ("paymentTermsId", G), ("shipmentMethodId", G),
            ("paymentMethodId", G),
        ),
        Property("blocked", EdmType.ENUM, "customerBlocked", tuple(CustomerBlocked)),
        Property("lastModifiedDateTime", DATETIME),
    ),
)  # fmt: skip

CUSTOMER_FINANCIAL_DETAIL = EntityType(
    name="customerFinancialDetail",
    entity_set="customerFinancialDetails",
    properties=_props(
        ("id", G), ("number", S), ("balance", D), ("totalSalesExcludingTax", D),
        ("overdueAmount", D), ("lastModifiedDateTime", DATETIME),
    ),
)  # fmt: skip

VENDOR = EntityType(
    name="vendor",
    entity_set="vendors",
    properties=(
        *_props(
            ("id", G), ("number", S), ("displayName", S), ("addressLine1", S), ("addressLine2", S),
            ("city", S), ("state", S), ("country", S), ("postalCode", S), ("phoneNumber", S),
            ("email", S), ("website", S), ("taxRegistrationNumber", S), ("currencyId", G),
            ("currencyCode", S), ("irs1099Code", S), ("paymentTermsId", G), ("paymentMethodId", G),
            ("taxLiable", BOOL),
        ),
        Property("blocked", EdmType.ENUM, "vendorBlocked", tuple(VendorBlocked)),
        *_props(("balance", D), ("lastModifiedDateTime", DATETIME)),
    ),
)  # fmt: skip


def _terms_id(book: CompanyBook, days: int) -> uuid.UUID:
    return uuid.uuid5(book.company.id, f"paymentTerms/{days}D")


def customer_records(book: CompanyBook, options: QueryOptions) -> list[Record]:
    totals = customer_totals(book)
    return [
        {
            "id": c.id,
            "number": c.number,
            "displayName": c.display_name,
            "type": "Company",
            "addressLine1": c.address.line1,
            "addressLine2": c.address.line2,
            "city": c.address.city,
            "state": c.address.state,
            "country": c.address.country,
            "postalCode": c.address.postal_code,
            "phoneNumber": c.phone_number,
            "email": c.email,
            "website": c.website,
            "salespersonCode": c.salesperson_code,
            # No date filter on the page: the whole open balance (LCY: all documents are).
            "balanceDue": totals[c.number].balance,
            "creditLimit": c.credit_limit,
            "taxLiable": True,
            "taxAreaId": BLANK_GUID,
            "taxAreaDisplayName": "",
            "taxRegistrationNumber": c.tax_registration_number,
            "currencyId": BLANK_GUID,
            "currencyCode": "",
            "paymentTermsId": _terms_id(book, c.payment_terms_days),
            "shipmentMethodId": BLANK_GUID,
            "paymentMethodId": BLANK_GUID,
            "blocked": c.blocked,
            "lastModifiedDateTime": c.last_modified,
        }
        for c in book.customers
    ]


def customer_financial_detail_records(book: CompanyBook, options: QueryOptions) -> list[Record]:
    totals = customer_totals(book)
    return [
        {
            "id": c.id,
            "number": c.number,
            "balance": totals[c.number].balance,
            "totalSalesExcludingTax": totals[c.number].sales_excluding_tax,
            "overdueAmount": totals[c.number].overdue,
            "lastModifiedDateTime": c.last_modified,
        }
        for c in book.customers
    ]


def vendor_records(book: CompanyBook, options: QueryOptions) -> list[Record]:
    balances = vendor_balances(book)
    return [
        {
            "id": v.id,
            "number": v.number,
            "displayName": v.display_name,
            "addressLine1": v.address.line1,
            "addressLine2": v.address.line2,
            "city": v.address.city,
            "state": v.address.state,
            "country": v.address.country,
            "postalCode": v.address.postal_code,
            "phoneNumber": v.phone_number,
            "email": v.email,
            "website": v.website,
            "taxRegistrationNumber": v.tax_registration_number,
            "currencyId": BLANK_GUID,
            "currencyCode": "",
            "irs1099Code": "",
            "paymentTermsId": _terms_id(book, v.payment_terms_days),
            "paymentMethodId": BLANK_GUID,
            "taxLiable": True,
            "blocked": v.blocked,
            "balance": balances[v.number],
            "lastModifiedDateTime": v.last_modified,
        }
        for v in book.vendors
    ]


# -- documents --------------------------------------------------------------------------


def _address_properties(*prefixes: str) -> tuple[Property, ...]:
    return _props(
        *(
            (f"{prefix}{suffix}", S)
            for prefix in prefixes
            for suffix in ("AddressLine1", "AddressLine2", "City", "Country", "State", "PostCode")
        )
    )


def _address_values(prefix: str, party: Party) -> dict[str, Value]:
    a = party.address
    return {
        f"{prefix}AddressLine1": a.line1, f"{prefix}AddressLine2": a.line2, f"{prefix}City": a.city,
        f"{prefix}Country": a.country, f"{prefix}State": a.state, f"{prefix}PostCode": a.postal_code,
    }  # fmt: skip


_TOTALS = _props(("totalAmountExcludingTax", D), ("totalTaxAmount", D), ("totalAmountIncludingTax", D))
_CUSTOMER_PARTY = _props(
    ("customerId", G), ("customerNumber", S), ("customerName", S), ("billToName", S),
    ("billToCustomerId", G), ("billToCustomerNumber", S), ("shipToName", S), ("shipToContact", S),
)  # fmt: skip

SALES_INVOICE = EntityType(
    name="salesInvoice",
    entity_set="salesInvoices",
    properties=(
        *_props(
            ("id", G), ("number", S), ("externalDocumentNumber", S), ("invoiceDate", DATE),
            ("postingDate", DATE), ("dueDate", DATE), ("promisedPayDate", DATE),
            ("customerPurchaseOrderReference", S),
        ),
        *_CUSTOMER_PARTY,
        *_address_properties("sellTo", "billTo", "shipTo"),
        *_props(
            ("currencyId", G), ("shortcutDimension1Code", S), ("shortcutDimension2Code", S),
            ("currencyCode", S), ("orderId", G), ("orderNumber", S), ("paymentTermsId", G),
            ("shipmentMethodId", G), ("salesperson", S), ("disputeStatusId", G), ("disputeStatus", S),
            ("pricesIncludeTax", BOOL), ("remainingAmount", D), ("discountAmount", D),
            ("discountAppliedBeforeTax", BOOL),
        ),
        *_TOTALS,
        Property("status", EdmType.ENUM, "invoiceEntityAggregateStatus", tuple(InvoiceStatus)),
        *_props(("lastModifiedDateTime", DATETIME), ("phoneNumber", S), ("email", S)),
    ),
)  # fmt: skip

SALES_CREDIT_MEMO = EntityType(
    name="salesCreditMemo",
    entity_set="salesCreditMemos",
    properties=(
        *_props(
            ("id", G), ("number", S), ("externalDocumentNumber", S), ("creditMemoDate", DATE),
            ("postingDate", DATE), ("dueDate", DATE), ("customerId", G), ("customerNumber", S),
            ("customerName", S), ("billToName", S), ("billToCustomerId", G), ("billToCustomerNumber", S),
        ),
        *_address_properties("sellTo", "billTo"),
        *_props(
            ("shortcutDimension1Code", S), ("shortcutDimension2Code", S), ("currencyId", G),
            ("currencyCode", S), ("paymentTermsId", G), ("shipmentMethodId", G), ("salesperson", S),
            ("pricesIncludeTax", BOOL), ("discountAmount", D), ("discountAppliedBeforeTax", BOOL),
        ),
        *_TOTALS,
        Property("status", EdmType.ENUM, "salesCrMemoEntityBufferStatus", tuple(CreditMemoStatus)),
        *_props(
            ("lastModifiedDateTime", DATETIME), ("invoiceId", G), ("invoiceNumber", S), ("phoneNumber", S),
            ("email", S), ("customerReturnReasonId", G),
        ),
    ),
)  # fmt: skip

PURCHASE_INVOICE = EntityType(
    name="purchaseInvoice",
    entity_set="purchaseInvoices",
    properties=(
        *_props(
            ("id", G), ("number", S), ("postingDate", DATE), ("invoiceDate", DATE), ("dueDate", DATE),
            ("vendorInvoiceNumber", S), ("vendorId", G), ("vendorNumber", S), ("vendorName", S),
            ("payToName", S), ("payToContact", S), ("payToVendorId", G), ("payToVendorNumber", S),
            ("shipToName", S), ("shipToContact", S),
        ),
        *_address_properties("buyFrom", "shipTo", "payTo"),
        *_props(
            ("shortcutDimension1Code", S), ("shortcutDimension2Code", S), ("currencyId", G),
            ("currencyCode", S), ("orderId", G), ("orderNumber", S), ("purchaser", S),
            ("pricesIncludeTax", BOOL), ("discountAmount", D), ("discountAppliedBeforeTax", BOOL),
        ),
        *_TOTALS,
        Property("status", EdmType.ENUM, "invoiceEntityAggregateStatus", tuple(InvoiceStatus)),
        Property("lastModifiedDateTime", DATETIME),
    ),
)  # fmt: skip

SALES_ORDER = EntityType(
    name="salesOrder",
    entity_set="salesOrders",
    properties=(
        *_props(
            ("id", G), ("number", S), ("externalDocumentNumber", S), ("orderDate", DATE),
            ("postingDate", DATE),
        ),
        *_CUSTOMER_PARTY,
        *_address_properties("sellTo", "billTo", "shipTo"),
        *_props(
            ("shortcutDimension1Code", S), ("shortcutDimension2Code", S), ("currencyId", G),
            ("currencyCode", S), ("pricesIncludeTax", BOOL), ("paymentTermsId", G),
            ("shipmentMethodId", G), ("salesperson", S), ("partialShipping", BOOL),
            ("requestedDeliveryDate", DATE), ("discountAmount", D), ("discountAppliedBeforeTax", BOOL),
        ),
        *_TOTALS,
        Property("fullyShipped", BOOL),
        Property("status", EdmType.ENUM, "salesOrderEntityBufferStatus", tuple(SalesOrderStatus)),
        *_props(("lastModifiedDateTime", DATETIME), ("phoneNumber", S), ("email", S)),
    ),
)  # fmt: skip

SALES_QUOTE = EntityType(
    name="salesQuote",
    entity_set="salesQuotes",
    properties=(
        *_props(
            ("id", G), ("number", S), ("externalDocumentNumber", S), ("documentDate", DATE),
            ("postingDate", DATE), ("dueDate", DATE),
        ),
        *_CUSTOMER_PARTY,
        *_address_properties("sellTo", "billTo", "shipTo"),
        *_props(
            ("shortcutDimension1Code", S), ("shortcutDimension2Code", S), ("currencyId", G),
            ("currencyCode", S), ("paymentTermsId", G), ("shipmentMethodId", G), ("salesperson", S),
            ("discountAmount", D),
        ),
        *_TOTALS,
        Property("status", EdmType.ENUM, "salesQuoteEntityBufferStatus", tuple(SalesQuoteStatus)),
        *_props(
            ("sentDate", DATETIME), ("validUntilDate", DATE), ("acceptedDate", DATE),
            ("lastModifiedDateTime", DATETIME), ("phoneNumber", S), ("email", S),
        ),
    ),
)  # fmt: skip


def _customer_values(d: Document) -> dict[str, Value]:
    c = d.party
    return {
        "customerId": c.id, "customerNumber": c.number, "customerName": c.display_name,
        "billToName": c.display_name, "billToCustomerId": c.id, "billToCustomerNumber": c.number,
        "shipToName": c.display_name, "shipToContact": c.contact,
        **_address_values("sellTo", c), **_address_values("billTo", c), **_address_values("shipTo", c),
    }  # fmt: skip


def _totals(d: Document) -> dict[str, Value]:
    return {
        "discountAmount": Decimal(0),
        "discountAppliedBeforeTax": False,
        "totalAmountExcludingTax": d.amount_excluding_tax,
        "totalTaxAmount": d.tax_amount,
        "totalAmountIncludingTax": d.amount_including_tax,
    }


def sales_invoice_records(book: CompanyBook, options: QueryOptions) -> list[Record]:
    return [
        {
            "id": d.id,
            "number": d.number,
            "externalDocumentNumber": d.external_number,
            "invoiceDate": d.document_date,
            "postingDate": d.posting_date,
            "dueDate": d.due_date,
            "promisedPayDate": BLANK_DATE,
            "customerPurchaseOrderReference": "",
            **_customer_values(d),
            "currencyId": BLANK_GUID,
            "shortcutDimension1Code": "",
            "shortcutDimension2Code": "",
            "currencyCode": "",
            "orderId": BLANK_GUID,
            "orderNumber": "",
            "paymentTermsId": _terms_id(book, d.party.payment_terms_days),
            "shipmentMethodId": BLANK_GUID,
            "salesperson": d.party.salesperson_code,
            "disputeStatusId": BLANK_GUID,
            "disputeStatus": "",
            "pricesIncludeTax": False,
            "remainingAmount": d.remaining_amount,
            **_totals(d),
            "status": d.status,
            "lastModifiedDateTime": d.last_modified,
            "phoneNumber": d.party.phone_number,
            "email": d.party.email,
        }
        for d in book.sales_invoices
    ]


def sales_credit_memo_records(book: CompanyBook, options: QueryOptions) -> list[Record]:
    return [
        {
            "id": d.id,
            "number": d.number,
            "externalDocumentNumber": d.external_number,
            "creditMemoDate": d.document_date,
            "postingDate": d.posting_date,
            "dueDate": d.due_date,
            # A credit memo has no ship-to.
            **{name: value for name, value in _customer_values(d).items() if not name.startswith("shipTo")},
            "shortcutDimension1Code": "",
            "shortcutDimension2Code": "",
            "currencyId": BLANK_GUID,
            "currencyCode": "",
            "paymentTermsId": _terms_id(book, d.party.payment_terms_days),
            "shipmentMethodId": BLANK_GUID,
            "salesperson": d.party.salesperson_code,
            "pricesIncludeTax": False,
            **_totals(d),
            "status": d.status,
            "lastModifiedDateTime": d.last_modified,
            # The sandbox does not keep which invoice a credit memo corrects.
            "invoiceId": BLANK_GUID,
            "invoiceNumber": "",
            "phoneNumber": d.party.phone_number,
            "email": d.party.email,
            "customerReturnReasonId": BLANK_GUID,
        }
        for d in book.sales_credit_memos
    ]


def purchase_invoice_records(book: CompanyBook, options: QueryOptions) -> list[Record]:
    return [
        {
            "id": d.id,
            "number": d.number,
            "postingDate": d.posting_date,
            "invoiceDate": d.document_date,
            "dueDate": d.due_date,
            "vendorInvoiceNumber": d.external_number or f"INV-{d.number[-4:]}",
            "vendorId": d.party.id,
            "vendorNumber": d.party.number,
            "vendorName": d.party.display_name,
            "payToName": d.party.display_name,
            "payToContact": d.party.contact,
            "payToVendorId": d.party.id,
            "payToVendorNumber": d.party.number,
            "shipToName": book.information.display_name,
            "shipToContact": "",
            **_address_values("buyFrom", d.party),
            **_address_values("shipTo", d.party),
            **_address_values("payTo", d.party),
            "shortcutDimension1Code": "",
            "shortcutDimension2Code": "",
            "currencyId": BLANK_GUID,
            "currencyCode": "",
            "orderId": BLANK_GUID,
            "orderNumber": "",
            "purchaser": "",
            "pricesIncludeTax": False,
            **_totals(d),
            "status": d.status,
            "lastModifiedDateTime": d.last_modified,
        }
        for d in book.purchase_invoices
    ]


def sales_order_records(book: CompanyBook, options: QueryOptions) -> list[Record]:
    return [
        {
            "id": d.id,
            "number": d.number,
            "externalDocumentNumber": d.external_number,
            "orderDate": d.document_date,
            "postingDate": d.posting_date,
            **_customer_values(d),
            "shortcutDimension1Code": "",
            "shortcutDimension2Code": "",
            "currencyId": BLANK_GUID,
            "currencyCode": "",
            "pricesIncludeTax": False,
            "paymentTermsId": _terms_id(book, d.party.payment_terms_days),
            "shipmentMethodId": BLANK_GUID,
            "salesperson": d.party.salesperson_code,
            "partialShipping": True,
            "requestedDeliveryDate": d.due_date,
            **_totals(d),
            "fullyShipped": False,
            "status": d.status,
            "lastModifiedDateTime": d.last_modified,
            "phoneNumber": d.party.phone_number,
            "email": d.party.email,
        }
        for d in book.documents.sales_orders
    ]


def sales_quote_records(book: CompanyBook, options: QueryOptions) -> list[Record]:
    records: list[Record] = []
    for d in book.documents.sales_quotes:
        sent = d.status in (SalesQuoteStatus.SENT, SalesQuoteStatus.ACCEPTED, SalesQuoteStatus.EXPIRED)
        records.append(
            {
                "id": d.id,
                "number": d.number,
                "externalDocumentNumber": d.external_number,
                "documentDate": d.document_date,
                "postingDate": d.posting_date,
                "dueDate": d.document_date + dt.timedelta(days=d.party.payment_terms_days),
                **_customer_values(d),
                "shortcutDimension1Code": "",
                "shortcutDimension2Code": "",
                "currencyId": BLANK_GUID,
                "currencyCode": "",
                "paymentTermsId": _terms_id(book, d.party.payment_terms_days),
                "shipmentMethodId": BLANK_GUID,
                "salesperson": d.party.salesperson_code,
                **_totals(d),
                "status": d.status,
                "sentDate": d.last_modified if sent else BLANK_DATETIME,
                "validUntilDate": d.due_date,
                "acceptedDate": d.document_date if d.status == SalesQuoteStatus.ACCEPTED else BLANK_DATE,
                "lastModifiedDateTime": d.last_modified,
                "phoneNumber": d.party.phone_number,
                "email": d.party.email,
            }
        )
    return records


CURRENCY_EXCHANGE_RATE = EntityType(
    name="currencyExchangeRate",
    entity_set="currencyExchangeRates",
    properties=_props(
        ("id", G), ("currencyCode", S), ("startingDate", DATE), ("exchangeRateAmount", D),
        ("relationalCurrencyCode", S), ("relationalExchangeRateAmount", D), ("lastModifiedDateTime", DATETIME),
    ),
)  # fmt: skip


def currency_exchange_rate_records(book: CompanyBook, business_date: dt.date) -> list[Record]:
    company = book.company
    return [
        {
            "id": uuid.uuid5(company.id, f"currencyExchangeRate/{row.currency_code}/{row.starting_date}"),
            "currencyCode": row.currency_code,
            "startingDate": row.starting_date,
            "exchangeRateAmount": row.exchange_rate_amount,
            "relationalCurrencyCode": row.relational_currency_code,
            "relationalExchangeRateAmount": row.relational_exchange_rate_amount,
            # Entered the working day before the rate starts.
            "lastModifiedDateTime": dt.datetime.combine(
                row.starting_date - dt.timedelta(days=1), dt.time(8, 30), tzinfo=dt.UTC
            ),
        }
        for row in rate_rows(book.ledger_setup.local_currency_code, company.data_seed, business_date)
    ]


# -- reports ----------------------------------------------------------------------------

_AGED_COMMON = _props(
    ("name", S), ("currencyCode", S), ("balanceDue", D), ("currentAmount", D),
)  # fmt: skip

AGED_RECEIVABLE = EntityType(
    name="agedAccountsReceivable",
    entity_set="agedAccountsReceivables",
    key="customerId",
    properties=(
        *_props(("customerId", G), ("customerNumber", S)),
        *_AGED_COMMON,
        *_props(
            ("period1Label", S), ("period1Amount", D), ("period2Label", S), ("period2Amount", D),
            ("period3Label", S), ("period3Amount", D), ("agedAsOfDate", DATE),
            ("periodLengthFilter", S),
        ),
    ),
)  # fmt: skip

AGED_PAYABLE = EntityType(
    name="agedAccountsPayable",
    entity_set="agedAccountsPayables",
    key="vendorId",
    properties=(
        *_props(("vendorId", G), ("vendorNumber", S)),
        *_AGED_COMMON,
        *_props(
            ("period1Amount", D), ("period2Amount", D), ("period3Amount", D), ("agedAsOfDate", DATE),
            ("periodLengthFilter", S),
        ),
    ),
)  # fmt: skip


def _statement(name: str, entity_set: str, amount_field: str) -> EntityType:
    return EntityType(
        name=name,
        entity_set=entity_set,
        properties=_props(
            ("id", G),
            ("lineNumber", INT32),
            ("display", S),
            (amount_field, D),
            ("lineType", S),
            ("indentation", INT32),
            ("dateFilter", DATE),
        ),
    )


BALANCE_SHEET = _statement("balanceSheet", "balanceSheets", "balance")
INCOME_STATEMENT = _statement("incomeStatement", "incomeStatements", "netChange")
CASH_FLOW_STATEMENT = _statement("cashFlowStatement", "cashFlowStatements", "netChange")
RETAINED_EARNINGS_STATEMENT = _statement("retainedEarningsStatement", "retainedEarningsStatements", "netChange")

TRIAL_BALANCE = EntityType(
    name="trialBalance",
    entity_set="trialBalances",
    key="accountId",
    properties=(
        *_props(("number", S), ("accountId", G)),
        Property("accountType", EdmType.ENUM, "glAccountType", tuple(AccountType)),
        *_props(
            ("display", S), ("totalDebit", S), ("totalCredit", S), ("balanceAtDateDebit", S),
            ("balanceAtDateCredit", S), ("dateFilter", DATE),
        ),
    ),
)  # fmt: skip


CUSTOMER_SALE = EntityType(
    name="customerSale",
    entity_set="customerSales",
    key="customerId",
    properties=_props(
        ("customerId", G), ("customerNumber", S), ("name", S), ("totalSalesAmount", D),
        ("dateFilter_FilterOnly", DATE),
    ),
)  # fmt: skip


def _date_range(options: QueryOptions, name: str) -> tuple[dt.date | None, dt.date | None]:
    """The bounds a query's filter column is given in ``$filter`` (``eq``, ``ge``/``gt``,
    ``le``/``lt``), None where it has none."""
    low: dt.date | None = None
    high: dt.date | None = None
    for comparison in top_level_comparisons(options.filter):
        value = comparison.literal
        if comparison.property.name != name or not isinstance(value, dt.date):
            continue
        if comparison.operator in ("eq", "ge"):
            low = value
        elif comparison.operator == "gt":
            low = value + dt.timedelta(days=1)
        if comparison.operator in ("eq", "le"):
            high = value
        elif comparison.operator == "lt":
            high = value - dt.timedelta(days=1)
    return low, high


def customer_sale_records(book: CompanyBook, options: QueryOptions) -> list[Record]:
    """Query 30000: each customer's Σ "Sales (LCY)" of its ledger's invoices and credit
    memos, posted within ``dateFilter_FilterOnly`` (a filter column: BC filters the ledger
    with it, keeps every customer and answers the column as null)."""
    low, high = _date_range(options, "dateFilter_FilterOnly")
    sales = customer_sales(book, low, high)
    return [
        {
            "customerId": c.id,
            "customerNumber": c.number,
            "name": c.display_name,
            "totalSalesAmount": sales[c.number],
            "dateFilter_FilterOnly": None,
        }
        for c in book.customers
    ]


def filter_parameter(options: QueryOptions, name: str) -> Value:
    """A report parameter from ``$filter``: the ``eq`` value, else the upper bound of a
    range (``le``/``lt``), else None."""
    comparisons = [c for c in top_level_comparisons(options.filter) if c.property.name == name]
    for operators in (("eq",), ("le", "lt")):
        for comparison in comparisons:
            if comparison.operator in operators and comparison.literal is not None:
                return comparison.literal
    return None


def _date_parameter(options: QueryOptions, name: str, default: dt.date) -> dt.date:
    value = filter_parameter(options, name)
    return value if isinstance(value, dt.date) else default


def aged_receivable_records(book: CompanyBook, options: QueryOptions) -> list[Record]:
    period = filter_parameter(options, "periodLengthFilter")
    return aged_receivables_records(
        book,
        _date_parameter(options, "agedAsOfDate", book.business_date),
        period if isinstance(period, str) else DEFAULT_PERIOD_LENGTH,
    )


def aged_payable_records(book: CompanyBook, options: QueryOptions) -> list[Record]:
    period = filter_parameter(options, "periodLengthFilter")
    return aged_payables_records(
        book,
        _date_parameter(options, "agedAsOfDate", book.business_date),
        period if isinstance(period, str) else DEFAULT_PERIOD_LENGTH,
    )


def _statement_records(
    entity: EntityType, lines: Callable[[CompanyBook], list[StatementLine]]
) -> Callable[[CompanyBook, QueryOptions], list[Record]]:
    amount_field = entity.properties[3].name  # balance or netChange

    def records(book: CompanyBook, options: QueryOptions) -> list[Record]:
        date_filter = _date_parameter(options, "dateFilter", book.business_date)
        return statement_records(book, entity.name, lines(book), amount_field, date_filter)

    return records


def trial_balance_entity_records(book: CompanyBook, options: QueryOptions) -> list[Record]:
    return trial_balance_records(book, _date_parameter(options, "dateFilter", book.business_date))


@dataclass(frozen=True)
class CompanyEntitySet:
    entity: EntityType
    # From the book (which knows its business date) and the request's query options
    # (report pages read their parameters from $filter).
    records: Callable[[CompanyBook, QueryOptions], list[Record]]
    # The table BC names when a permission is missing (fault "company_forbidden").
    table: str = "15 G/L Account"


def _ignore_options(
    records: Callable[[CompanyBook, dt.date], list[Record]],
) -> Callable[[CompanyBook, QueryOptions], list[Record]]:
    return lambda book, options: records(book, book.business_date)


GL_ENTRY = "17 G/L Entry"


def _statement_set(entity: EntityType, lines: Callable[[CompanyBook], list[StatementLine]]) -> CompanyEntitySet:
    return CompanyEntitySet(entity, _statement_records(entity, lines), GL_ENTRY)


# Entity sets under companies({id}), by their URL name.
COMPANY_ENTITY_SETS: dict[str, CompanyEntitySet] = {
    entity_set.entity.entity_set: entity_set
    for entity_set in (
        CompanyEntitySet(COMPANY_INFORMATION, _ignore_options(company_information_records), "79 Company"),
        CompanyEntitySet(GENERAL_LEDGER_SETUP, _ignore_options(general_ledger_setup_records), "98 G/L Setup"),
        CompanyEntitySet(ACCOUNTING_PERIOD, _ignore_options(accounting_period_records), "50 Accounting Period"),
        CompanyEntitySet(ACCOUNT, _ignore_options(account_records)),
        CompanyEntitySet(GENERAL_LEDGER_ENTRY, _ignore_options(general_ledger_entry_records), GL_ENTRY),
        CompanyEntitySet(CUSTOMER, customer_records, "18 Customer"),
        CompanyEntitySet(CUSTOMER_FINANCIAL_DETAIL, customer_financial_detail_records, "18 Customer"),
        CompanyEntitySet(CUSTOMER_SALE, customer_sale_records, "21 Cust. Ledger Entry"),
        CompanyEntitySet(VENDOR, vendor_records, "23 Vendor"),
        CompanyEntitySet(SALES_INVOICE, sales_invoice_records, "112 Sales Invoice Header"),
        CompanyEntitySet(SALES_CREDIT_MEMO, sales_credit_memo_records, "114 Sales Cr.Memo Header"),
        CompanyEntitySet(PURCHASE_INVOICE, purchase_invoice_records, "122 Purch. Inv. Header"),
        CompanyEntitySet(SALES_ORDER, sales_order_records, "36 Sales Header"),
        CompanyEntitySet(SALES_QUOTE, sales_quote_records, "36 Sales Header"),
        CompanyEntitySet(
            CURRENCY_EXCHANGE_RATE, _ignore_options(currency_exchange_rate_records), "330 Currency Exchange Rate"
        ),
        CompanyEntitySet(AGED_RECEIVABLE, aged_receivable_records, "21 Cust. Ledger Entry"),
        CompanyEntitySet(AGED_PAYABLE, aged_payable_records, "25 Vendor Ledger Entry"),
        _statement_set(BALANCE_SHEET, balance_sheet_lines),
        _statement_set(INCOME_STATEMENT, income_statement_lines),
        _statement_set(CASH_FLOW_STATEMENT, cash_flow_statement_lines),
        _statement_set(RETAINED_EARNINGS_STATEMENT, retained_earnings_lines),
        CompanyEntitySet(TRIAL_BALANCE, trial_balance_entity_records, GL_ENTRY),
    )
}  # fmt: skip


def company_entity_records(entity_set: CompanyEntitySet, book: CompanyBook, options: QueryOptions) -> list[Record]:
    return entity_set.records(book, options)


def etag_for(record: Record) -> str:
    """A weak ETag that changes whenever the record does. BC's are opaque base64 of a row
    version; clients must only echo them back in If-Match."""
    digest = hashlib.sha256(repr(sorted((k, str(v)) for k, v in record.items())).encode())
    row_version = int.from_bytes(digest.digest()[:7], "big")
    token = base64.b64encode(f"'{len(str(row_version)) + 3};{row_version}1;00;'".encode())
    return f'W/"{token.decode()}"'
