"""The figure rules of a snapshot, table by table: no BC, no NATS, only records in and figures out.

Records are built from BC's own field names (API v2.0), as the fetcher receives them.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from hub_common.events import ExchangeRate, ExchangeRates
from hub_common.money import as_booked
from hub_fetcher.bc.entities import (
    Account,
    CustomerSale,
    GeneralLedgerSetup,
    PurchaseInvoice,
    SalesDocumentEntity,
    SalesInvoice,
)
from hub_fetcher.figures import documents
from hub_fetcher.figures.company import (
    POSTED_PURCHASE_INVOICE_PAGE,
    POSTED_SALES_INVOICE_PAGE,
    ChosenAccounts,
    CompanyRecords,
    CueFigures,
    company_figures,
    local_currency,
)
from hub_fetcher.figures.currencies import ToLocalCurrency
from hub_fetcher.figures.taxes import DEFAULT_RULE, is_tax_payable

TODAY = dt.date(2026, 11, 18)  # a Wednesday: weeks run from today, not from Monday
READ_AT = dt.datetime(2026, 11, 18, 9, 30, tzinfo=dt.UTC)


def days(offset: int) -> str:
    return (TODAY + dt.timedelta(days=offset)).isoformat()


def link(page: int, number: str) -> str:
    return f"bc/{page}/{number}"


def figures(records: CompanyRecords, **options: Any) -> Any:
    # Any: company_figures fills every figure (the empty-books test proves it), so the
    # tests read them without a None check each.
    return company_figures(records, today=TODAY, read_at=READ_AT, document_link=link, **options)


def account(number: str, name: str, *, category: str, sub: str = "", kind: str = "Posting", change: str) -> Account:
    return Account.model_validate(
        {
            "number": number,
            "displayName": name,
            "category": category,
            "subCategory": sub,
            "accountType": kind,
            "netChange": change,
        }
    )


def sale(
    number: str, *, due: int | None, remaining: str, status: str = "Open", customer: str = "Adatum"
) -> SalesInvoice:
    return SalesInvoice.model_validate(
        {
            "number": number,
            "customerName": customer,
            "status": status,
            "dueDate": days(due) if due is not None else None,
            "remainingAmount": remaining,
        }
    )


def purchase(number: str, *, due: int | None, total: str, status: str = "Open") -> PurchaseInvoice:
    return PurchaseInvoice.model_validate(
        {
            "number": number,
            "vendorName": "Fabrikam",
            "status": status,
            "dueDate": days(due) if due is not None else None,
            "totalAmountIncludingTax": total,
        }
    )


# ---------------------------------------------------------------- empty books


def test_empty_books_give_zero_figures_and_no_currency() -> None:
    empty = CompanyRecords()
    result = figures(empty)
    assert local_currency(empty) == ""
    assert (result.cash.total, result.cash.accounts, result.cash.source) == (Decimal(0), [], "api")
    assert (result.overdue_sales_invoices.count, result.overdue_sales_invoices.total) == (0, Decimal(0))
    assert result.overdue_sales_invoices.largest == []
    assert (result.overdue_purchase_invoices.count, result.overdue_purchase_invoices.total) == (0, Decimal(0))
    assert (result.purchase_invoices_due_next_week.count, result.purchase_invoices_due_next_week.amount) == (
        0,
        Decimal(0),
    )
    documents_open = result.open_sales_documents
    assert (documents_open.quotes_count, documents_open.orders_count, documents_open.invoices_count) == (0, 0, 0)
    assert (result.taxes_due.amount, result.taxes_due.accounts, result.taxes_due.rule) == (
        Decimal(0),
        [],
        DEFAULT_RULE,
    )
    assert result.sales_this_month.amount == Decimal(0)
    forecast = result.cash_flow_forecast
    assert len(forecast.weeks) == documents.FORECAST_WEEKS
    assert {week.closing_balance for week in forecast.weeks} == {Decimal(0)}
    assert forecast.low_point == forecast.opening_cash == Decimal(0)
    every_figure = [getattr(result, name) for name in type(result).model_fields]
    assert all(figure.read_at == READ_AT for figure in every_figure)


# ---------------------------------------------------------------- currencies


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ([{"localCurrencyCode": "DKK"}], "DKK"),
        ([{"localCurrencyCode": "USD"}], "USD"),
        # BC leaves LCY Code blank in a company set up in US dollars without naming them.
        ([{"localCurrencyCode": ""}], ""),
        ([{}], ""),
        ([], ""),
    ],
)
def test_local_currency_comes_from_the_general_ledger_setup(setup: list[dict[str, str]], expected: str) -> None:
    records = CompanyRecords(setup=[GeneralLedgerSetup.model_validate(row) for row in setup])
    assert local_currency(records) == expected


def test_amounts_keep_their_decimals_exactly() -> None:
    records = CompanyRecords(
        open_sales_invoices=[sale("S1", due=-1, remaining="0.10"), sale("S2", due=-2, remaining="0.20")],
        accounts=[account("1100", "Bank", category="Assets", sub="Cash", change="1234567890123.45")],
    )
    result = figures(records)
    assert result.overdue_sales_invoices.total == Decimal("0.30")
    assert result.cash.total == Decimal("1234567890123.45")


# ---------------------------------------------------------------- overdue and due next week


@pytest.mark.parametrize(
    ("due", "overdue_days"),
    [
        (-30, 30),
        (-1, 1),
        (0, None),  # due today is not overdue yet
        (1, None),
        (None, None),  # an open invoice without a due date is never overdue
    ],
)
def test_overdue_means_due_before_today(due: int | None, overdue_days: int | None) -> None:
    records = CompanyRecords(
        open_sales_invoices=[sale("S1", due=due, remaining="100.00")],
        open_purchase_invoices=[purchase("P1", due=due, total="40.00")],
    )
    result = figures(records)
    for figure, amount in ((result.overdue_sales_invoices, "100.00"), (result.overdue_purchase_invoices, "40.00")):
        if overdue_days is None:
            assert (figure.count, figure.total, figure.largest) == (0, Decimal(0), [])
        else:
            assert (figure.count, figure.total) == (1, Decimal(amount))
            assert figure.largest[0].days_overdue == overdue_days


@pytest.mark.parametrize(
    ("status", "counted"),
    [("Open", True), ("Paid", False), ("Canceled", False), ("Corrective", False), ("Draft", False)],
)
def test_only_open_invoices_are_owed(status: str, counted: bool) -> None:
    records = CompanyRecords(
        open_sales_invoices=[sale("S1", due=-5, remaining="0", status=status)],
        open_purchase_invoices=[purchase("P1", due=3, total="20.00", status=status)],
    )
    result = figures(records)
    assert result.overdue_sales_invoices.count == (1 if counted else 0)
    assert result.purchase_invoices_due_next_week.count == (1 if counted else 0)


@pytest.mark.parametrize(("remaining", "counted"), [("10.00", True), ("0", False), ("0.00", False)])
def test_a_corrective_sales_invoice_is_owed_until_paid(remaining: str, counted: bool) -> None:
    """BC keeps a corrective invoice (posted when a posted credit memo is cancelled) at the
    status Corrective whether it is paid or not: its remaining amount says which. Purchase
    invoices have no remaining amount in API v2.0, so a corrective one never counts."""
    records = CompanyRecords(
        open_sales_invoices=[sale("S1", due=-5, remaining=remaining, status="Corrective")],
        open_purchase_invoices=[purchase("P1", due=-5, total="20.00", status="Corrective")],
    )
    result = figures(records)
    assert (result.overdue_sales_invoices.count, result.overdue_sales_invoices.total) == (
        (1, Decimal(remaining)) if counted else (0, Decimal(0))
    )
    assert result.overdue_purchase_invoices.count == 0


def test_overdue_lists_the_ten_largest_with_links_into_bc() -> None:
    invoices = [sale(f"S{n:02}", due=-n, remaining=f"{n * 10}.00") for n in range(1, 13)]
    # Equal amounts: the older due date first, then the number.
    invoices += [sale("S99", due=-1, remaining="120.00"), sale("S98", due=-1, remaining="120.00")]
    result = figures(
        CompanyRecords(open_sales_invoices=invoices, open_purchase_invoices=[purchase("P1", due=-2, total="5")])
    )
    overdue = result.overdue_sales_invoices
    assert overdue.count == 14
    assert overdue.total == sum(Decimal(n * 10) for n in range(1, 13)) + Decimal(240)
    assert [line.number for line in overdue.largest] == [
        "S12",
        "S98",
        "S99",
        "S11",
        "S10",
        "S09",
        "S08",
        "S07",
        "S06",
        "S05",
    ]
    assert overdue.largest[0].link == f"bc/{POSTED_SALES_INVOICE_PAGE}/S12"
    assert overdue.amount_basis == "remaining_amount"
    purchases = result.overdue_purchase_invoices
    assert purchases.largest[0].link == f"bc/{POSTED_PURCHASE_INVOICE_PAGE}/P1"
    # purchaseInvoices have no remainingAmount in API v2.0: the figure says what it summed.
    assert purchases.amount_basis == "total_including_tax"


@pytest.mark.parametrize(
    ("due", "next_week"),
    [(-1, False), (0, False), (1, True), (7, True), (8, False)],
)
def test_purchase_invoices_due_next_week_run_from_tomorrow_to_a_week_from_today(due: int, next_week: bool) -> None:
    result = figures(CompanyRecords(open_purchase_invoices=[purchase("P1", due=due, total="75.50")]))
    due_soon = result.purchase_invoices_due_next_week
    assert (due_soon.count, due_soon.amount) == ((1, Decimal("75.50")) if next_week else (0, Decimal(0)))


# ---------------------------------------------------------------- the cash-flow forecast


@pytest.mark.parametrize(
    ("due", "week"),
    [
        (-400, 0),  # overdue, however long ago, falls in week 1
        (-1, 0),
        (0, 0),
        (6, 0),
        (7, 1),  # each week starts on today's weekday
        (13, 1),
        (14, 2),
        (90, 12),  # the last day of the 13th week
        (91, None),  # beyond the horizon
    ],
)
def test_forecast_weeks_start_today_and_overdue_items_fall_in_the_first(due: int, week: int | None) -> None:
    assert documents.week_index(TODAY + dt.timedelta(days=due), TODAY) == week
    records = CompanyRecords(
        accounts=[account("1100", "Bank", category="Assets", sub="Cash", change="1000.00")],
        open_sales_invoices=[sale("S1", due=due, remaining="250.00")],
        open_purchase_invoices=[purchase("P1", due=due, total="100.00")],
    )
    forecast = figures(records).cash_flow_forecast
    receipts = [w.receipts for w in forecast.weeks]
    payments = [w.payments for w in forecast.weeks]
    expected_receipts = [Decimal(0)] * documents.FORECAST_WEEKS
    expected_payments = [Decimal(0)] * documents.FORECAST_WEEKS
    if week is not None:
        expected_receipts[week] = Decimal("250.00")
        expected_payments[week] = Decimal("100.00")
    assert (receipts, payments) == (expected_receipts, expected_payments)
    assert forecast.weeks[-1].closing_balance == Decimal("1150.00" if week is not None else "1000.00")


def test_forecast_balances_run_on_and_the_low_point_is_the_lowest_closing() -> None:
    records = CompanyRecords(
        accounts=[account("1100", "Bank", category="Assets", sub="Cash", change="500.00")],
        open_sales_invoices=[sale("S1", due=20, remaining="1000.00")],
        open_purchase_invoices=[purchase("P1", due=3, total="800.00"), purchase("P2", due=8, total="100.00")],
    )
    forecast = figures(records).cash_flow_forecast
    assert [w.week_start for w in forecast.weeks[:3]] == [TODAY, TODAY + dt.timedelta(7), TODAY + dt.timedelta(14)]
    assert [w.closing_balance for w in forecast.weeks[:4]] == [
        Decimal("-300.00"),
        Decimal("-400.00"),
        Decimal("600.00"),
        Decimal("600.00"),
    ]
    assert forecast.opening_cash == Decimal("500.00")
    assert forecast.low_point == Decimal("-400.00")


def test_a_forecast_that_never_dips_has_the_opening_cash_as_its_low_point() -> None:
    records = CompanyRecords(
        accounts=[account("1100", "Bank", category="Assets", sub="Cash", change="500.00")],
        open_sales_invoices=[sale("S1", due=2, remaining="10.00")],
    )
    assert figures(records).cash_flow_forecast.low_point == Decimal("500.00")


# ---------------------------------------------------------------- cash


@pytest.mark.parametrize(
    ("category", "sub", "kind", "cash"),
    [
        ("Assets", "Cash", "Posting", True),
        ("Assets", " cash ", "Posting", True),
        ("Assets", "Cash", "Total", False),  # totals would count the same money twice
        ("Assets", "Bank Accounts", "Posting", False),
        ("Assets", "Receivables", "Posting", False),
        ("Liabilities", "Cash", "Posting", False),
    ],
)
def test_cash_accounts_are_posting_assets_of_subcategory_cash(category: str, sub: str, kind: str, cash: bool) -> None:
    records = CompanyRecords(
        accounts=[account("1100", "Petty cash", category=category, sub=sub, kind=kind, change="42.00")]
    )
    result = figures(records).cash
    assert result.total == (Decimal("42.00") if cash else Decimal(0))
    assert [a.number for a in result.accounts] == (["1100"] if cash else [])


CHART_IN_GERMAN = [
    account("1800", "Bank", category="Assets", sub="Flüssige Mittel", change="1000.00"),
    account("1810", "Kasse", category="Assets", sub="Flüssige Mittel", change="25.50"),
    account("1899", "Summe Flüssige Mittel", category="Assets", sub="Flüssige Mittel", kind="Total", change="1025.50"),
    account("1400", "Forderungen", category="Assets", sub="Forderungen", change="700.00"),
    account("3100", "Darlehen", category="Liabilities", sub="Darlehen", change="-5000.00"),
]


@pytest.mark.parametrize(
    ("named", "numbers", "total"),
    [
        # The rule knows the English subcategory only: a German chart shows no cash.
        (None, [], "0"),
        (frozenset({"1800", "1810"}), ["1800", "1810"], "1025.50"),
        # Named accounts count whatever their category (an overdraft facility as cash)...
        (frozenset({"1800", "3100"}), ["1800", "3100"], "-4000.00"),
        # ...but never a total account, which would count its accounts' money twice.
        (frozenset({"1800", "1899"}), ["1800"], "1000.00"),
        (frozenset({"9999"}), [], "0"),
    ],
)
def test_cash_by_rule_or_by_the_accounts_the_client_card_names(
    named: frozenset[str] | None, numbers: list[str], total: str
) -> None:
    cash = figures(CompanyRecords(accounts=CHART_IN_GERMAN), chosen_accounts=ChosenAccounts(cash=named)).cash
    assert [a.number for a in cash.accounts] == numbers
    assert cash.total == Decimal(total)
    assert cash.source == ("api" if named is None else "client_card")


def test_the_client_cards_cash_accounts_outrank_the_cues_total() -> None:
    cues = CueFigures(
        cash_accounts_balance=Decimal("150.00"), overdue_sales_amount=Decimal(0), overdue_purchase_amount=Decimal(0)
    )
    chosen = ChosenAccounts(cash=frozenset({"1810"}))
    result = figures(CompanyRecords(accounts=CHART_IN_GERMAN), cues=cues, chosen_accounts=chosen)
    assert (result.cash.total, result.cash.source) == (Decimal("25.50"), "client_card")
    assert result.cash_flow_forecast.opening_cash == Decimal("25.50")


def test_chosen_accounts_of_an_empty_list_are_the_rule() -> None:
    assert ChosenAccounts.of(taxes=None, cash=[]) == ChosenAccounts()
    assert ChosenAccounts.of(taxes=["2510"], cash=None) == ChosenAccounts(taxes=frozenset({"2510"}))


def test_cue_services_give_bc_s_own_totals_and_the_forecast_starts_from_them() -> None:
    records = CompanyRecords(
        accounts=[account("1100", "Bank", category="Assets", sub="Cash", change="100.00")],
        open_sales_invoices=[sale("S1", due=-3, remaining="70.00")],
        open_purchase_invoices=[purchase("P1", due=-3, total="90.00")],
    )
    cues = CueFigures(
        cash_accounts_balance=Decimal("150.00"),
        overdue_sales_amount=Decimal("65.00"),
        overdue_purchase_amount=Decimal("80.00"),
    )
    result = figures(records, cues=cues)
    assert (result.cash.total, result.cash.source) == (Decimal("150.00"), "cues")
    assert [a.number for a in result.cash.accounts] == ["1100"], "the accounts still come from API v2.0"
    assert (result.overdue_sales_invoices.count, result.overdue_sales_invoices.total) == (1, Decimal("65.00"))
    assert result.overdue_purchase_invoices.total == Decimal("80.00")
    assert result.overdue_purchase_invoices.amount_basis == "remaining_amount"
    assert result.cash_flow_forecast.opening_cash == Decimal("150.00")


# ---------------------------------------------------------------- taxes due


@pytest.mark.parametrize(
    ("name", "category", "sub", "kind", "payable"),
    [
        ("Sales VAT 25 %", "Liabilities", "Current Liabilities", "Posting", True),
        ("Sales Tax Payable", "Liabilities", "", "Posting", True),
        ("Income Taxes", "Liabilities", "Current Liabilities", "Posting", True),
        ("Moms, udgående", "Liabilities", "", "Posting", True),
        ("MwSt. 19 %", "Liabilities", "", "Posting", True),
        ("TVA collectée", "Liabilities", "", "Posting", True),
        # Compound words: German, Danish, Swedish, Norwegian, Dutch charts of accounts.
        ("Umsatzsteuer 19 %", "Liabilities", "", "Posting", True),
        ("Vorsteuer 19 %", "Liabilities", "", "Posting", True),
        ("Salgsmoms", "Liabilities", "", "Posting", True),
        ("Købsmoms", "Liabilities", "", "Posting", True),
        ("Momsafregning", "Liabilities", "", "Posting", True),
        ("Utgående moms 25 %", "Liabilities", "", "Posting", True),
        ("Utgående mva høy sats", "Liabilities", "", "Posting", True),
        ("Skyldig merverdiavgift", "Liabilities", "", "Posting", True),
        ("Af te dragen omzetbelasting", "Liabilities", "", "Posting", True),
        ("Lohn und Gehalt", "Liabilities", "", "Posting", False),
        ("Rückstellungen für Steuerberatungskosten", "Liabilities", "", "Posting", False),
        ("Verbindlichkeiten Steuerberater", "Liabilities", "", "Posting", False),
        ("Passive latente Steuern", "Liabilities", "", "Posting", False),
        ("Uitgestelde belastingverplichtingen", "Liabilities", "", "Posting", False),
        ("Deferred tax liabilities", "Liabilities", "", "Posting", False),
        ("Leverandørgæld", "Liabilities", "", "Posting", False),
        ("Accrued payable", "Liabilities", "Taxes Payable", "Posting", True),  # the subcategory names the tax
        ("VAT receivable", "Liabilities", "Taxes Payable", "Posting", False),
        ("Deductible VAT", "Liabilities", "", "Posting", False),
        ("Prepaid taxes", "Liabilities", "", "Posting", False),
        ("VAT refund", "Liabilities", "", "Posting", False),
        ("Taxi fares payable", "Liabilities", "", "Posting", False),  # a word, not a prefix
        ("Wages payable", "Liabilities", "Current Liabilities", "Posting", False),
        ("Sales VAT 25 %", "Liabilities", "", "Total", False),
        ("Sales VAT 25 %", "Assets", "", "Posting", False),
    ],
)
def test_the_default_tax_rule(name: str, category: str, sub: str, kind: str, payable: bool) -> None:
    assert is_tax_payable(account("2510", name, category=category, sub=sub, kind=kind, change="0")) is payable


TAX_CHART = [
    account("2510", "Sales VAT 25 %", category="Liabilities", change="-1000.00"),
    account("2520", "Purchase VAT 25 %", category="Liabilities", change="300.00"),
    account("2600", "Wages payable", category="Liabilities", change="-999.00"),
    account("1900", "Prepaid tax", category="Assets", sub="Taxes", change="-5.00"),
]


@pytest.mark.parametrize(
    ("override", "numbers", "owed"),
    [
        # Liabilities carry credit balances: the amount owed is minus their sum.
        (None, ["2510", "2520"], "700.00"),
        (frozenset({"2510"}), ["2510"], "1000.00"),
        # An override names exactly the accounts, whatever the default rule says of them.
        (frozenset({"2600", "1900"}), ["1900", "2600"], "1004.00"),
        (frozenset({"9999"}), [], "0"),
    ],
)
def test_taxes_due_by_rule_or_by_the_client_s_accounts(
    override: frozenset[str] | None, numbers: list[str], owed: str
) -> None:
    taxes = figures(CompanyRecords(accounts=TAX_CHART), chosen_accounts=ChosenAccounts(taxes=override)).taxes_due
    assert [a.number for a in taxes.accounts] == numbers
    assert taxes.amount == Decimal(owed)
    assert (taxes.rule == DEFAULT_RULE) is (override is None)


# ---------------------------------------------------------------- open sales documents and sales this month


def test_open_sales_documents_count_quotes_orders_and_unposted_invoices() -> None:
    def document(status: str, total: str) -> SalesDocumentEntity:
        return SalesDocumentEntity.model_validate({"status": status, "totalAmountIncludingTax": total})

    def unposted(status: str, total: str) -> SalesDocumentEntity:
        return SalesDocumentEntity.model_validate({"status": status, "totalAmountIncludingTax": total})

    records = CompanyRecords(
        sales_quotes=[document("Draft", "10.00"), document("Expired ", "5.00")],
        sales_orders=[document("Released", "20.00")],
        unposted_sales_invoices=[
            unposted("Draft", "1.00"),
            unposted("In_x0020_Review", "2.00"),
            unposted("In Review", "4.00"),
            unposted("Open", "8.00"),  # posted: not a document still open for editing
        ],
    )
    open_documents = figures(records).open_sales_documents
    assert (open_documents.quotes_count, open_documents.quotes_amount) == (2, Decimal("15.00"))
    assert (open_documents.orders_count, open_documents.orders_amount) == (1, Decimal("20.00"))
    assert (open_documents.invoices_count, open_documents.invoices_amount) == (3, Decimal("7.00"))


def test_sales_this_month_are_the_customers_sales_of_the_month_as_bc_sums_them() -> None:
    """customerSales gives each customer's "Sales (LCY)" (invoices less credit memos) for the
    month: a customer whose credit memos exceed its invoices lowers the total."""

    def sale(number: str, amount: str) -> CustomerSale:
        return CustomerSale.model_validate({"customerNumber": number, "totalSalesAmount": amount})

    records = CompanyRecords(
        customer_sales_this_month=[
            sale("C10000", "1200.50"),
            sale("C10010", "-300.25"),
            sale("C10020", "0"),
            CustomerSale.model_validate({"customerNumber": "C10030", "totalSalesAmount": None}),
        ]
    )
    assert figures(records).sales_this_month.amount == Decimal("900.25")
    assert figures(CompanyRecords()).sales_this_month.amount == Decimal(0)
    # Its amounts are the company's own currency already: nothing is converted.
    euro = ToLocalCurrency("EUR", {"USD": Decimal("0.92")})
    assert figures(records, to_local=euro).sales_this_month.amount == Decimal("900.25")


# ---------------------------------------------------------------- documents in other currencies


def in_currency(model: Any, currency: str, **fields: Any) -> Any:
    """A document as BC sends it with its currencyCode (empty: the company's own)."""
    return model.model_validate({**fields, "currencyCode": currency})


def test_documents_in_another_currency_count_in_the_company_s_own() -> None:
    # A euro company; BC's rates today: 1 USD = 0.92 EUR; no rate for JPY.
    to_local = ToLocalCurrency("EUR", {"USD": Decimal("0.92"), "JPY": None})
    records = CompanyRecords(
        setup=[GeneralLedgerSetup.model_validate({"localCurrencyCode": "EUR"})],
        open_sales_invoices=[
            in_currency(SalesInvoice, code, number=number, status="Open", dueDate=days(-3), remainingAmount=amount)
            for code, number, amount in (("USD", "S1", "1000"), ("", "S2", "50"), ("EUR", "S3", "7"))
        ],
        open_purchase_invoices=[
            in_currency(
                PurchaseInvoice, "USD", number="P1", status="Open", dueDate=days(2), totalAmountIncludingTax="10"
            ),
        ],
        sales_quotes=[in_currency(SalesDocumentEntity, "USD", status="Open", totalAmountIncludingTax="100")],
    )
    result = figures(records, to_local=to_local)
    # 1,000 USD is 920 EUR, not 1,000 EUR.
    assert result.overdue_sales_invoices.total == Decimal("977.00")
    assert [line.amount for line in result.overdue_sales_invoices.largest] == [
        Decimal("920.00"),
        Decimal("50"),
        Decimal("7"),
    ]
    assert result.purchase_invoices_due_next_week.amount == Decimal("9.20")
    assert result.open_sales_documents.quotes_amount == Decimal("92.00")
    # Receipts and payments of the forecast are in euros too.
    assert result.cash_flow_forecast.weeks[0].receipts == Decimal("977.00")


def test_an_amount_without_a_usable_rate_is_taken_as_it_is() -> None:
    to_local = ToLocalCurrency("EUR", {"JPY": None})
    assert to_local(Decimal("1000"), "JPY") == Decimal("1000")
    assert to_local(Decimal("1000"), "CHF") == Decimal("1000")
    assert to_local(Decimal("1000"), "") == Decimal("1000")
    assert to_local(Decimal("10.005"), "EUR") == Decimal("10.005")  # the company's own: untouched
    assert to_local(Decimal("0.01"), "USD") == Decimal("0.01")


def test_the_rates_of_the_snapshot_make_the_conversion() -> None:
    rates = ExchangeRates(
        as_of=TODAY,
        rates=[
            ExchangeRate(currency_code="USD", lcy_per_unit=Decimal("0.923456"), starting_date=TODAY),
            ExchangeRate(currency_code="DKK", lcy_per_unit=None, starting_date=TODAY),
        ],
    )
    to_local = ToLocalCurrency.at(rates, "EUR")
    assert to_local(Decimal("100"), "USD") == Decimal("92.35")
    assert to_local(Decimal("100"), "DKK") == Decimal("100")


def test_a_card_naming_many_tax_accounts_still_gives_a_snapshot() -> None:
    """A card may name 100 accounts of 20 characters; the rule listed them all and went past
    what a snapshot carries, so every refresh of the client failed as a bad answer."""
    numbers = [f"21100-STATE-{n:03d}" for n in range(100)]
    chart = [account(number, f"Sales tax {number}", category="Liabilities", change="-1.00") for number in numbers]
    taxes = figures(
        CompanyRecords(accounts=chart), chosen_accounts=ChosenAccounts.of(taxes=numbers, cash=None)
    ).taxes_due
    assert len(taxes.accounts) == 100 and taxes.amount == Decimal("100.00")
    assert len(taxes.rule) <= 500
    assert taxes.rule.startswith("Client override: accounts 21100-STATE-000, 21100-STATE-001")
    assert " more; amount owed = minus their balance." in taxes.rule


def test_a_card_names_accounts_whatever_their_case() -> None:
    """BC keeps account numbers in capitals; a card naming them in small letters matched none."""
    chart = [
        account("VAT-OUT", "VAT payable", category="Liabilities", change="-300.00"),
        account("BANK-EUR", "Bank", category="Assets", sub="Cash", change="50.00"),
    ]
    chosen = ChosenAccounts.of(taxes=["vat-out"], cash=["Bank-Eur"])
    result = figures(CompanyRecords(accounts=chart), chosen_accounts=chosen)
    assert result.taxes_due.amount == Decimal("300.00")
    assert [a.number for a in result.cash.accounts] == ["BANK-EUR"]


def test_a_three_decimal_currency_keeps_its_third_decimal() -> None:
    """A company keeping its books in Kuwaiti dinars: BC books amounts to the fils (0.001),
    and every figure was rounded to the cent (1,234.567 showed as 1,234.570)."""
    records = CompanyRecords(
        accounts=[
            account("1100", "Bank", category="Assets", sub="Cash", change="1000.125"),
            account("1110", "Petty cash", category="Assets", sub="Cash", change="234.442"),
            account("2510", "VAT payable", category="Liabilities", sub="Taxes", change="-12.345"),
        ],
        open_sales_invoices=[sale("S1", due=-3, remaining="100.005"), sale("S2", due=4, remaining="0.001")],
        open_purchase_invoices=[purchase("P1", due=2, total="50.250")],
    )
    result = figures(records)
    assert result.cash.total == Decimal("1234.567")
    assert result.taxes_due.amount == Decimal("12.345")
    assert result.overdue_sales_invoices.total == Decimal("100.005")
    assert result.purchase_invoices_due_next_week.amount == Decimal("50.25")
    forecast = result.cash_flow_forecast
    assert forecast.opening_cash == Decimal("1234.567")
    assert (forecast.weeks[0].receipts, forecast.weeks[0].payments) == (Decimal("100.006"), Decimal("50.25"))
    assert forecast.weeks[0].closing_balance == Decimal("1284.323")


@pytest.mark.parametrize(
    ("amount", "booked"),
    [
        ("3705.9", "3705.90"),
        ("3705", "3705.00"),
        ("1234.567", "1234.567"),
        ("1234.5670", "1234.567"),
        ("1234.5600", "1234.56"),
        # Finer than BC books: rounded to the cent, a half away from zero, as before.
        ("10.12501", "10.13"),
        ("-10.12501", "-10.13"),
        ("0.0004", "0.00"),
    ],
)
def test_amounts_are_kept_as_booked(amount: str, booked: str) -> None:
    kept = as_booked(Decimal(amount))
    assert (str(kept), kept) == (booked, Decimal(booked))


def test_an_overdue_invoice_names_who_pays_it() -> None:
    """A head office pays for its branch: BC posts the invoice to the bill-to customer's (or
    pay-to vendor's) ledger, so that is whom to chase; the sell-to (buy-from) name only
    when BC wrote no other."""
    sales = [
        SalesInvoice.model_validate(
            {"number": "S1", "customerName": "Adatum Branch", "billToName": "Adatum Head Office", "status": "Open"}
            | {"dueDate": days(-3), "remainingAmount": "10.00"}
        ),
        SalesInvoice.model_validate(
            {"number": "S2", "customerName": "Trey Research", "billToName": "", "status": "Open"}
            | {"dueDate": days(-2), "remainingAmount": "5.00"}
        ),
    ]
    purchases = [
        PurchaseInvoice.model_validate(
            {"number": "P1", "vendorName": "Fabrikam Depot", "payToName": "Fabrikam Inc.", "status": "Open"}
            | {"dueDate": days(-3), "totalAmountIncludingTax": "7.00"}
        )
    ]
    result = figures(CompanyRecords(open_sales_invoices=sales, open_purchase_invoices=purchases))
    assert [line.counterparty for line in result.overdue_sales_invoices.largest] == [
        "Adatum Head Office",
        "Trey Research",
    ]
    assert [line.counterparty for line in result.overdue_purchase_invoices.largest] == ["Fabrikam Inc."]
