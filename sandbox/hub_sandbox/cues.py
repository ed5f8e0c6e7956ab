"""The ODataV4 web services the Accountant Portal and Company Hub read: ``Company`` and the
cue pages ``AccountantPortalActivityCues`` (page 1314) and ``AccountantPortalFinanceCues``
(page 1315), one record each, computed from the same book as API v2.0.

Property names are the page control names (reference §3.2). ``*Amount`` properties are
Text: money is the currency symbol followed by the amount formatted ``#,##0.00``
(``AcctWebServicesMgt.FormatAmountString``), counts are formatted integers, both
right-padded with spaces to 30 characters; ``*Decimal`` properties are numbers and
``*Style`` properties a "Cues And KPIs Style" value.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hub_sandbox.documents import CustomerBlocked, SalesOrderStatus, VendorBlocked
from hub_sandbox.figures import (
    average_collection_days,
    cash_balance,
    open_purchase_invoices,
    overdue_purchase_amount,
    overdue_purchase_invoices,
    overdue_sales_amount,
    overdue_sales_invoices,
    purchase_invoices_due_next_week,
    sales_invoices_due_next_week,
    sales_this_month,
    top10_customer_sales_ytd,
    unposted_purchase_invoices,
    unposted_sales_invoices,
)
from hub_sandbox.odata import EdmType, EntityType, Property, Record, Value
from hub_sandbox.seed import CompanyBook
from hub_sandbox.tenants import SandboxCompany

ACTIVITY_CUES_SERVICE = "AccountantPortalActivityCues"
FINANCE_CUES_SERVICE = "AccountantPortalFinanceCues"
CUE_TEXT_WIDTH = 30

# "Cues And KPIs Style" members.
NONE, FAVORABLE, UNFAVORABLE, AMBIGUOUS = "None", "Favorable", "Unfavorable", "Ambiguous"


def pad(text: str) -> str:
    """PadStr(text, 30): right-padded with spaces."""
    return text.ljust(CUE_TEXT_WIDTH)


def format_money(symbol: str, amount: Decimal) -> str:
    """Symbol + amount with two decimals and thousands separators: "£12,345.67"."""
    return pad(f"{symbol}{amount:,.2f}")


def format_count(count: int) -> str:
    return pad(f"{count:,}")


def _count_style(count: int, bad_when_positive: bool = True) -> str:
    if count == 0:
        return FAVORABLE if bad_when_positive else NONE
    return UNFAVORABLE if bad_when_positive else NONE


def _amount_style(amount: Decimal) -> str:
    return UNFAVORABLE if amount > 0 else FAVORABLE


# -- Company ----------------------------------------------------------------------------

ODATA_COMPANY = EntityType(
    name="Company",
    entity_set="Company",
    key="Name",
    properties=(
        Property("Name", EdmType.STRING),
        Property("Evaluation_Company", EdmType.BOOLEAN),
        Property("Display_Name", EdmType.STRING),
        Property("Id", EdmType.GUID),
        Property("Business_Profile_Id", EdmType.STRING),
    ),
)


def odata_company_record(company: SandboxCompany) -> Record:
    return {
        "Name": company.name,
        # CRONUS companies are BC's demo companies: Company Hub skips them by default.
        "Evaluation_Company": company.name.startswith("CRONUS"),
        "Display_Name": company.display_name,
        "Id": company.id,
        "Business_Profile_Id": "",
    }


# -- cues -------------------------------------------------------------------------------


def _cue_entity(name: str, pairs: list[tuple[str, EdmType]]) -> EntityType:
    return EntityType(
        name=name,
        entity_set=name,
        key="Primary_Key",
        properties=tuple(Property(n, t) for n, t in pairs),
    )


def _text_with_style(*names: str) -> list[tuple[str, EdmType]]:
    """``XAmount`` and its ``XStyle`` sibling for each name X."""
    pairs: list[tuple[str, EdmType]] = []
    for name in names:
        pairs += [(f"{name}Amount", EdmType.STRING), (f"{name}Style", EdmType.STRING)]
    return pairs


S, D = EdmType.STRING, EdmType.DECIMAL

ACTIVITY_CUES = _cue_entity(
    ACTIVITY_CUES_SERVICE,
    [
        ("Primary_Key", S),
        ("OverduePurchInvoiceAmount", S), ("OverduePurchInvoiceAmountDecimal", D),
        ("OverduePurchInvoiceStyle", S), ("CurrencySymbol", S),
        ("OverdueSalesInvoiceAmount", S), ("OverdueSalesInvoiceAmountDecimal", D),
        ("OverdueSalesInvoiceStyle", S),
        *_text_with_style(
            "NonAppliedPayments", "PurchInvoicesDueNextWeek", "SalesInvoicesDueNextWeek",
            "OngoingPurchaseInvoices", "OngoingSalesInvoices", "SalesThisMonth",
            "Top10CustomerSalesYTD", "AverageCollectionDays", "OngoingSalesQuotes",
            "OngoingSalesOrders", "RequeststoApprove", "PurchaseOrders", "SalesInvPendDocExchange",
            "SalesCrMPendDocExchange", "MyIncomingDocuments", "IncDocAwaitingVerif", "ContactName",
        ),
    ],
)  # fmt: skip

FINANCE_CUES = _cue_entity(
    FINANCE_CUES_SERVICE,
    [
        ("Primary_Key", S),
        ("OverduePurchaseDocumentsAmount", S), ("OverduePurchaseDocumentsStyle", S),
        ("CurrencySymbol", S),
        *_text_with_style(
            "PurchaseDiscountsNextWeek", "OverdueSalesDocuments", "PurchaseDocumentsDueToday",
            "VendorsPaymentsOnHold", "POsPendingApproval", "SOsPendingApproval",
            "ApprovedSalesOrders", "ApprovedPurchaseOrders", "PurchaseReturnOrders",
            "SalesReturnOrdersAll", "CustomersBlocked", "NewIncomingDocuments",
            "ApprovedIncomingDocuments", "OCRPending", "OCRCompleted", "RequeststoApprove",
            "RequestsSentForApproval",
        ),
        ("CashAccountsBalanceAmount", S), ("CashAccountsBalanceAmountDecimal", D),
        ("CashAccountsBalanceStyle", S),
        *_text_with_style("LastDepreciatedPostedDate", "LastLoginDate"),
    ],
)  # fmt: skip

CUE_SERVICES: dict[str, EntityType] = {
    ACTIVITY_CUES_SERVICE: ACTIVITY_CUES,
    FINANCE_CUES_SERVICE: FINANCE_CUES,
}


def activity_cues_record(book: CompanyBook) -> Record:
    symbol = book.ledger_setup.local_currency_symbol
    overdue_purchases = overdue_purchase_amount(book)
    overdue_sales = overdue_sales_amount(book)
    record: dict[str, Value] = {
        "Primary_Key": "",
        "OverduePurchInvoiceAmount": format_money(symbol, overdue_purchases),
        "OverduePurchInvoiceAmountDecimal": overdue_purchases,
        "OverduePurchInvoiceStyle": _amount_style(overdue_purchases),
        "CurrencySymbol": symbol,
        "OverdueSalesInvoiceAmount": format_money(symbol, overdue_sales),
        "OverdueSalesInvoiceAmountDecimal": overdue_sales,
        "OverdueSalesInvoiceStyle": _amount_style(overdue_sales),
    }
    counts = {
        "NonAppliedPayments": 0,
        "PurchInvoicesDueNextWeek": len(purchase_invoices_due_next_week(book)),
        "SalesInvoicesDueNextWeek": len(sales_invoices_due_next_week(book)),
        "OngoingPurchaseInvoices": len(unposted_purchase_invoices(book)),
        "OngoingSalesInvoices": len(unposted_sales_invoices(book)),
    }
    for name, count in counts.items():
        record[f"{name}Amount"] = format_count(count)
        record[f"{name}Style"] = NONE if name.startswith("Ongoing") else _count_style(count)
    this_month = sales_this_month(book)
    record["SalesThisMonthAmount"] = format_money(symbol, this_month)
    record["SalesThisMonthStyle"] = FAVORABLE if this_month > 0 else AMBIGUOUS
    record["Top10CustomerSalesYTDAmount"] = format_money(symbol, top10_customer_sales_ytd(book))
    record["Top10CustomerSalesYTDStyle"] = NONE
    record["AverageCollectionDaysAmount"] = pad(f"{average_collection_days(book):,.1f}")
    record["AverageCollectionDaysStyle"] = NONE
    more_counts = {
        "OngoingSalesQuotes": len(book.documents.sales_quotes),
        "OngoingSalesOrders": len(book.documents.sales_orders),
        # No approvals, purchase orders, document exchange or incoming documents in the sandbox.
        "RequeststoApprove": 0,
        "PurchaseOrders": 0,
        "SalesInvPendDocExchange": 0,
        "SalesCrMPendDocExchange": 0,
        "MyIncomingDocuments": 0,
        "IncDocAwaitingVerif": 0,
    }
    for name, count in more_counts.items():
        record[f"{name}Amount"] = format_count(count)
        record[f"{name}Style"] = NONE
    record["ContactNameAmount"] = pad(book.information.contact_person)
    record["ContactNameStyle"] = NONE
    return record


def finance_cues_record(book: CompanyBook, today: dt.date) -> Record:
    symbol = book.ledger_setup.local_currency_symbol
    cash = cash_balance(book)
    due_today = [d for d in open_purchase_invoices(book) if d.due_date <= today]
    counts = {
        "OverduePurchaseDocuments": len(overdue_purchase_invoices(book)),
        "PurchaseDiscountsNextWeek": 0,
        "OverdueSalesDocuments": len(overdue_sales_invoices(book)),
        "PurchaseDocumentsDueToday": len(due_today),
        "VendorsPaymentsOnHold": sum(1 for v in book.vendors if v.blocked == VendorBlocked.PAYMENT),
        "POsPendingApproval": 0,
        "SOsPendingApproval": sum(1 for d in book.documents.sales_orders if d.status == SalesOrderStatus.IN_REVIEW),
        # Released orders are status Open in the API.
        "ApprovedSalesOrders": sum(1 for d in book.documents.sales_orders if d.status == SalesOrderStatus.OPEN),
        "ApprovedPurchaseOrders": 0,
        "PurchaseReturnOrders": 0,
        "SalesReturnOrdersAll": 0,
        "CustomersBlocked": sum(1 for c in book.customers if c.blocked != CustomerBlocked.NONE),
        "NewIncomingDocuments": 0,
        "ApprovedIncomingDocuments": 0,
        "OCRPending": 0,
        "OCRCompleted": 0,
        "RequeststoApprove": 0,
        "RequestsSentForApproval": 0,
    }
    record: dict[str, Value] = {"Primary_Key": ""}
    for name, count in counts.items():
        record[f"{name}Amount"] = format_count(count)
        record[f"{name}Style"] = _count_style(count) if name.startswith("Overdue") else NONE
    record["CurrencySymbol"] = symbol
    record["CashAccountsBalanceAmount"] = format_money(symbol, cash)
    record["CashAccountsBalanceAmountDecimal"] = cash
    record["CashAccountsBalanceStyle"] = FAVORABLE if cash >= 0 else UNFAVORABLE
    record["LastDepreciatedPostedDateAmount"] = pad(_short_date(book.fiscal_year_start - dt.timedelta(days=1)))
    record["LastDepreciatedPostedDateStyle"] = NONE
    record["LastLoginDateAmount"] = pad(_short_date(today))
    record["LastLoginDateStyle"] = NONE
    return record


def _short_date(date: dt.date) -> str:
    """BC's default en-US date text: 12/31/26."""
    return date.strftime("%m/%d/%y")


def cue_record(service: str, book: CompanyBook) -> Record:
    if service == ACTIVITY_CUES_SERVICE:
        return activity_cues_record(book)
    return finance_cues_record(book, book.business_date)
