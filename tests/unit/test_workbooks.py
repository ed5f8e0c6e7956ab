"""The workbook builders: open the bytes with openpyxl and read back sheets, values,
number formats, print settings and page headers."""

from __future__ import annotations

import io
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import pytest
from openpyxl import load_workbook

from hub_common.events import (
    CashFigure,
    CashFlowForecast,
    CompanyFigures,
    ForecastWeek,
    InvoicesDue,
    OpenSalesDocuments,
    OverdueInvoices,
    SalesThisMonth,
    TaxesDue,
)
from hub_common.statements import (
    AgedLine,
    AgedReport,
    CompanyStatements,
    LineType,
    Statement,
    StatementLine,
    TrialBalance,
    TrialBalanceLine,
)
from hub_gateway.dashboard.currency import CompanyCurrency, RateInEffect, converted_amount
from hub_gateway.dashboard.queries import DashboardRow, FailureSummary
from hub_gateway.readmodel.columns import FIGURE_COLUMNS, ColumnKind
from hub_gateway.reports import attachment_disposition, company_workbook, key_figures_rows, key_figures_workbook
from hub_gateway.reports.company import SHEET_TITLES
from hub_gateway.reports.key_figures import HEADINGS, KeyFiguresRow

AS_OF = date(2026, 5, 19)
READ_AT = datetime(2026, 5, 19, 10, 22, tzinfo=UTC)
D = Decimal


def _line(number: int, text: str, amount: str, line_type: LineType = "detail", indentation: int = 1) -> StatementLine:
    return StatementLine(
        line_number=number,
        description=text,
        amount=D(amount),
        line_type=line_type,
        indentation=indentation,
    )


BALANCE_SHEET = Statement(
    period_start=None,
    period_end=AS_OF,
    lines=[
        _line(10000, "Assets", "0", "header", 0),
        _line(20000, "Cash", "1234.50"),
        _line(30000, '=HYPERLINK("https://evil.example")', "100.00", "detail", 2),
        _line(40000, "Total Assets", "1334.50", "total", 0),
        _line(50000, "", "0", "spacer", 0),
        _line(60000, "Liabilities", "0", "header", 0),
    ],
)


def _statements(**changes: Any) -> CompanyStatements:
    base = CompanyStatements(
        company_id=uuid.uuid4(),
        currency_code="EUR",
        as_of=AS_OF,
        fiscal_year_start=date(2026, 1, 1),
        read_at=READ_AT,
        balance_sheet=BALANCE_SHEET,
        income_statement=Statement(
            period_start=date(2026, 1, 1),
            period_end=AS_OF,
            lines=[_line(1, "Income", "0", "header", 0), _line(2, "Net Income", "-50.25", "total", 0)],
        ),
        cash_flow_statement=Statement(period_start=date(2026, 1, 1), period_end=AS_OF, lines=[]),
        retained_earnings=Statement(
            period_start=date(2026, 1, 1), period_end=AS_OF, lines=[_line(1, "Retained Earnings, Period End", "9")]
        ),
        trial_balance=TrialBalance(
            period_start=date(2026, 1, 1),
            period_end=AS_OF,
            lines=[
                TrialBalanceLine(
                    number="10000",
                    name="BALANCE SHEET",
                    account_type="Heading",
                    net_change_debit=None,
                    net_change_credit=None,
                    balance_debit=None,
                    balance_credit=None,
                ),
                TrialBalanceLine(
                    number="10100",
                    name="Checking account",
                    account_type="Posting",
                    net_change_debit=D("500.00"),
                    net_change_credit=D("0"),
                    balance_debit=D("700.00"),
                    balance_credit=D("0"),
                ),
                TrialBalanceLine(
                    number="20100",
                    name="Payables",
                    account_type="Posting",
                    net_change_debit=D("0"),
                    net_change_credit=D("500.00"),
                    balance_debit=D("0"),
                    balance_credit=D("700.00"),
                ),
                TrialBalanceLine(
                    number="19999",
                    name="Total assets",
                    account_type="End-Total",
                    net_change_debit=D("500.00"),
                    net_change_credit=D("0"),
                    balance_debit=D("700.00"),
                    balance_credit=D("0"),
                ),
            ],
        ),
        aged_receivables=AgedReport(
            as_of=AS_OF,
            period_days=30,
            lines=[
                AgedLine(
                    number="C10000",
                    name="Adatum & Söhne",
                    currency_code="",
                    current=D("10"),
                    period1=D("20"),
                    period2=D("30"),
                    period3=D("40"),
                    balance_due=D("100"),
                ),
                AgedLine(
                    number="C20000",
                    name="Trey Research",
                    currency_code="USD",
                    current=D("1.10"),
                    period1=D("0"),
                    period2=D("0"),
                    period3=D("0.05"),
                    balance_due=D("1.15"),
                ),
            ],
        ),
        aged_payables=AgedReport(as_of=AS_OF, period_days=30, lines=[]),
    )
    return base.model_copy(update=changes)


def _open(content: bytes) -> Any:
    return load_workbook(io.BytesIO(content))


def _build(statements: CompanyStatements | None = None) -> Any:
    return _open(
        company_workbook(
            statements or _statements(),
            client_name="Mühlbach Gruppe",
            company_name='CRONUS & Co. "Nord"',
            currency_code="EUR",
            as_of=AS_OF,
        )
    )


def _column(sheet: Any, column: int, first_row: int = 6) -> list[Any]:
    return [sheet.cell(row=r, column=column).value for r in range(first_row, sheet.max_row + 1)]


def test_one_sheet_per_statement_in_order() -> None:
    assert _build().sheetnames == list(SHEET_TITLES)


def test_every_sheet_names_the_company_and_the_date_and_is_set_up_to_print() -> None:
    workbook = _build()
    for title in SHEET_TITLES:
        sheet = workbook[title]
        assert sheet["A1"].value == 'CRONUS & Co. "Nord"'
        assert sheet["A1"].font.b
        assert sheet["A2"].value.startswith(title)
        assert "Mühlbach Gruppe" in sheet["A3"].value
        assert "EUR" in sheet["A3"].value
        assert "2026-05-19 10:22 UTC" in sheet["A3"].value
        # "&" opens a code in page headers, so the company's "&" is doubled.
        assert sheet.oddHeader.left.text == 'CRONUS && Co. "Nord"'
        assert sheet.oddHeader.center.text == title
        assert sheet.oddHeader.right.text == "As of 2026-05-19"
        assert sheet.oddFooter.center.text == "Page &P of &N"
        assert sheet.print_title_rows == "$5:$5"
        assert sheet.print_area.startswith(f"'{title}'!$A$1:")
        assert sheet.page_setup.fitToWidth == 1
        assert sheet.page_setup.fitToHeight == 0
        assert sheet.sheet_properties.pageSetUpPr.fitToPage
        assert sheet.freeze_panes == "A6"
        header = [c.value for c in sheet[5] if c.value is not None]
        assert header, title
        assert all(c.font.b for c in sheet[5] if c.value is not None)


def test_a_long_client_or_company_name_wraps_within_the_printed_columns() -> None:
    """The title rows run across the printed columns and wrap: on one line, a long name ran
    past column B of a statement, and that part was not printed."""
    client = "Stichting Beheer Vastgoed en Participaties Noord-Holland Zuid"
    company = "Coöperatieve Vereniging Agrarische Dienstverlening West-Friesland U.A. (Hoofdvestiging)"
    workbook = _open(
        company_workbook(_statements(), client_name=client, company_name=company, currency_code="EUR", as_of=AS_OF)
    )
    for title, last_column in (("Balance Sheet", "B"), ("Trial Balance", "F"), ("Aged Receivables", "G")):
        sheet = workbook[title]
        merged = {str(cells) for cells in sheet.merged_cells.ranges}
        assert {f"A1:{last_column}1", f"A2:{last_column}2", f"A3:{last_column}3"} <= merged, (title, merged)
        assert all(sheet.cell(row=row, column=1).alignment.wrap_text for row in (1, 2, 3))
        assert sheet["A1"].value == company and client in sheet["A3"].value
    # Balance Sheet prints 80 characters wide: the 14-point name and the note take two lines.
    balance_sheet = workbook["Balance Sheet"]
    assert balance_sheet.row_dimensions[1].height >= 2 * 14
    assert balance_sheet.row_dimensions[3].height >= 2 * 9


def test_orientation_fits_the_columns() -> None:
    workbook = _build()
    assert workbook["Balance Sheet"].page_setup.orientation == "portrait"
    assert workbook["Trial Balance"].page_setup.orientation == "landscape"
    assert workbook["Aged Receivables"].page_setup.orientation == "landscape"


def test_statement_lines_keep_bcs_structure_and_amounts() -> None:
    sheet = _build()["Balance Sheet"]
    assert sheet.print_area == "'Balance Sheet'!$A$1:$B$11"
    assert [c.value for c in sheet[5][:2]] == ["Description", "Balance"]
    assert _column(sheet, 1) == [
        "Assets",
        "Cash",
        '=HYPERLINK("https://evil.example")',
        "Total Assets",
        None,
        "Liabilities",
    ]
    assert _column(sheet, 2) == [None, 1234.5, 100, 1334.5, None, None]
    # A tenant's text that looks like a formula stays text.
    assert sheet["A8"].data_type == "s"
    assert sheet["A6"].font.b  # header
    assert not sheet["A7"].font.b
    assert sheet["A7"].alignment.indent == 1
    assert sheet["A8"].alignment.indent == 2
    assert sheet["A9"].font.b and sheet["B9"].font.b  # BC's total line
    assert sheet["B9"].border.top.style == "thin"
    # A zero prints blank, as BC prints its reports: a text line BC's API gives an amount
    # of 0 (a heading with no accounts to sum) shows no "0.00".
    assert sheet["B7"].number_format == '#,##0.00 "EUR";-#,##0.00 "EUR";;@'
    # The trial balance and the aged reports show their zeros.
    assert _build()["Trial Balance"]["C6"].number_format == '#,##0.00 "EUR";-#,##0.00 "EUR"'


def test_period_statements_name_their_period() -> None:
    workbook = _build()
    assert workbook["Balance Sheet"]["A2"].value == "Balance Sheet — as of 2026-05-19"
    assert workbook["Income Statement"]["A2"].value == "Income Statement — 2026-01-01 to 2026-05-19"
    assert workbook["Income Statement"]["B7"].value == -50.25
    assert workbook["Income Statement"]["B5"].value == "Net change"
    empty = workbook["Cash Flow Statement"]
    assert "no lines" in empty["A6"].value


def test_a_statement_bc_could_not_compute_says_why_and_where_to_mend_it() -> None:
    unavailable = Statement(
        period_start=date(2026, 1, 1),
        period_end=AS_OF,
        lines=[],
        unavailable="=Fin. Rep. for Cash Flow Stmt must have a value in General Ledger Setup: Primary Key=''.",
    )
    workbook = _build(_statements(cash_flow_statement=unavailable))
    sheet = workbook["Cash Flow Statement"]
    assert sheet["A6"].value == (
        "Business Central could not compute this statement: "
        "=Fin. Rep. for Cash Flow Stmt must have a value in General Ledger Setup: Primary Key=''."
    )
    assert sheet["A6"].data_type == "s" and sheet["A6"].alignment.wrap_text
    assert "“Fin. Rep. for Cash Flow Stmt”" in sheet["A7"].value
    assert "A6:B6" in {str(merged) for merged in sheet.merged_cells.ranges}
    assert sheet["B6"].value is None and sheet["B7"].value is None
    assert sheet.print_area == "'Cash Flow Statement'!$A$1:$B$7"
    # The other statements print as ever.
    assert workbook["Income Statement"]["B7"].value == -50.25


def test_trial_balance_totals_only_posting_accounts() -> None:
    sheet = _build()["Trial Balance"]
    assert [c.value for c in sheet[5]] == [
        "No.",
        "Name",
        "Debits in period",
        "Credits in period",
        "Balance debit",
        "Balance credit",
    ]
    assert _column(sheet, 1)[:4] == ["10000", "10100", "20100", "19999"]
    assert sheet["A6"].font.b and sheet["A9"].font.b and not sheet["A7"].font.b
    assert [sheet.cell(row=6, column=c).value for c in range(3, 7)] == [None] * 4
    total_row = [sheet.cell(row=10, column=c).value for c in range(2, 7)]
    assert total_row == ["Total of posting accounts", 500, 500, 700, 700]
    assert sheet["C10"].border.bottom.style == "double"
    assert sheet["C10"].number_format == '#,##0.00 "EUR";-#,##0.00 "EUR"'


def test_aging_of_a_past_date_says_it_is_of_what_is_open_now() -> None:
    """BC's aging API has no posting-date cut-off: as of a past date, it ages what is open
    when asked, which the balance sheet of that date need not match."""
    read_later = _open(
        company_workbook(
            _statements(),
            client_name="c",
            company_name="x",
            currency_code="EUR",
            as_of=AS_OF,
            today_at_client=AS_OF + timedelta(days=40),
        )
    )
    for title in ("Aged Receivables", "Aged Payables"):
        note = read_later[title]["A4"].value
        assert note.startswith(f"Business Central ages what is open on {AS_OF + timedelta(days=40)}")
        assert f"posted or paid after {AS_OF}" in note
        # Wrapped across the sheet's seven columns: on one line it ran off the printed page.
        assert "A4:G4" in {str(merged) for merged in read_later[title].merged_cells.ranges}
        assert read_later[title]["A4"].alignment.wrap_text
    assert read_later["Balance Sheet"]["A4"].value is None
    assert _build()["Aged Receivables"]["A4"].value is None  # read on its own date


def test_aged_receivables_have_a_grand_total_and_aged_payables_say_when_empty() -> None:
    workbook = _build()
    sheet = workbook["Aged Receivables"]
    assert [c.value for c in sheet[5]] == [
        "No.",
        "Customer",
        "Not yet due",
        "1–30 days overdue",
        "31–60 days overdue",
        "Over 60 days overdue",
        "Balance due",
    ]
    assert _column(sheet, 2) == ["Adatum & Söhne", "Trey Research", "Total"]
    assert [D(str(sheet.cell(row=8, column=c).value)) for c in range(3, 8)] == [
        D("11.1"),
        D("20"),
        D("30"),
        D("40.05"),
        D("101.15"),
    ]
    assert sheet["G8"].font.b
    payables = workbook["Aged Payables"]
    assert payables["B6"].value == "No open items."
    assert payables["B7"].value == "Total"
    assert payables["G7"].value == 0


def test_no_currency_code_means_plain_amounts_and_odd_codes_cannot_break_the_format() -> None:
    plain = _open(company_workbook(_statements(), client_name="c", company_name="x", currency_code="", as_of=AS_OF))
    assert plain["Balance Sheet"]["B7"].number_format == "#,##0.00;-#,##0.00;;@"
    odd = _open(company_workbook(_statements(), client_name="c", company_name="x", currency_code='E"U;R', as_of=AS_OF))
    assert odd["Balance Sheet"]["B7"].number_format == '#,##0.00 "EUR";-#,##0.00 "EUR";;@'


def test_a_bold_row_with_a_sum_keeps_it() -> None:
    """BC's lineType "header" is any bold row of posting accounts, also one that sums a range."""
    lines = [
        _line(10000, "Assets", "0", "header", 0),
        _line(20000, "Total Current Assets", "2500.00", "header", 0),
        _line(30000, "Cash", "2500.00"),
    ]
    sheet = _build(_statements(balance_sheet=BALANCE_SHEET.model_copy(update={"lines": lines})))["Balance Sheet"]
    assert [(sheet.cell(row, 1).value, sheet.cell(row, 2).value) for row in (6, 7, 8)] == [
        ("Assets", None),
        ("Total Current Assets", D("2500.00")),
        ("Cash", D("2500.00")),
    ]
    assert sheet["B7"].font.bold


def test_a_company_keeping_three_decimals_prints_them() -> None:
    """A Kuwaiti company's amounts are in fils (0.001 KWD): rounded to cents, its statements
    would not add up to what BC shows."""
    trial_balance = _statements().trial_balance
    fils = trial_balance.model_copy(
        update={
            "lines": [
                *trial_balance.lines[:1],
                trial_balance.lines[1].model_copy(update={"balance_debit": D("700.125")}),
            ]
        }
    )
    workbook = _open(
        company_workbook(
            _statements(trial_balance=fils), client_name="c", company_name="x", currency_code="KWD", as_of=AS_OF
        )
    )
    three = '#,##0.000 "KWD";-#,##0.000 "KWD"'
    assert workbook["Balance Sheet"]["B7"].number_format == f"{three};;@"
    cells = [c for row in workbook["Trial Balance"].iter_rows() for c in row if c.value == D("700.125")]
    assert cells and {cell.number_format for cell in cells} == {three}  # the account's line and the total
    # Amounts written with more decimals than BC keeps still print with at most five.
    many = _statements(
        retained_earnings=Statement(period_start=None, period_end=AS_OF, lines=[_line(1, "x", "0.1234567")])
    )
    assert "#,##0.00000 " in _build(many)["Balance Sheet"]["B7"].number_format


def test_hostile_names_are_cleaned_and_headers_stay_within_excels_limit() -> None:
    name = "Bad\x00\x07 & name " + "&" * 300
    workbook = _open(
        company_workbook(_statements(), client_name="c\x1b", company_name=name, currency_code="EUR", as_of=AS_OF)
    )
    sheet = workbook["Balance Sheet"]
    assert sheet["A1"].value.startswith("Bad & name")
    header = sheet.oddHeader
    total = len(header.left.text or "") + len(header.center.text or "") + len(header.right.text or "")
    assert total + 6 <= 255
    assert not header.left.text.endswith("&") or header.left.text.endswith("&&")


def test_what_xml_refuses_is_left_out_so_the_file_opens() -> None:
    """U+FFFF and U+FFFE pass JSON, pydantic and NATS, but not XML: one in a tenant's name
    made the whole workbook unreadable."""
    lines = [_line(10000, "Cash\ufffe desk", "12.00"), _line(20000, "Petty\uffff cash", "1.00")]
    statements = _statements(balance_sheet=BALANCE_SHEET.model_copy(update={"lines": lines}))
    workbook = _open(
        company_workbook(statements, client_name="c", company_name="Acme\uffff", currency_code="EUR", as_of=AS_OF)
    )
    sheet = workbook["Balance Sheet"]
    assert (sheet["A1"].value, sheet["A6"].value, sheet["A7"].value) == ("Acme", "Cash desk", "Petty cash")


def _figures(cash: str, overdue_sales: str = "0", low_point: str = "0") -> CompanyFigures:
    return CompanyFigures(
        cash=CashFigure(accounts=[], total=D(cash), source="api", read_at=READ_AT),
        overdue_sales_invoices=OverdueInvoices(
            count=2, total=D(overdue_sales), largest=[], amount_basis="remaining_amount", read_at=READ_AT
        ),
        overdue_purchase_invoices=OverdueInvoices(
            count=1, total=D("5"), largest=[], amount_basis="total_including_tax", read_at=READ_AT
        ),
        purchase_invoices_due_next_week=InvoicesDue(count=3, amount=D("30"), read_at=READ_AT),
        open_sales_documents=OpenSalesDocuments(
            quotes_count=1,
            quotes_amount=D("1"),
            orders_count=2,
            orders_amount=D("2"),
            invoices_count=3,
            invoices_amount=D("3"),
            read_at=READ_AT,
        ),
        taxes_due=TaxesDue(amount=D("7.50"), accounts=[], rule="rule", read_at=READ_AT),
        sales_this_month=SalesThisMonth(amount=D("1000"), read_at=READ_AT),
        cash_flow_forecast=CashFlowForecast(
            opening_cash=D(cash),
            weeks=[
                ForecastWeek(week_start=AS_OF, receipts=D(0), payments=D(0), closing_balance=D(cash)) for _ in range(13)
            ],
            low_point=D(low_point),
            read_at=READ_AT,
        ),
    )


def _row(client: str, company: str | None, currency: str | None, figures: CompanyFigures | None) -> KeyFiguresRow:
    return KeyFiguresRow(
        client_name=client,
        company_name=company,
        currency_code=currency,
        as_of=READ_AT if figures else None,
        state="ok" if figures else "failed",
        figures=figures,
        note=None if figures else "The client's Business Central environment does not exist.",
    )


def _key_figures(rows: list[KeyFiguresRow]) -> Any:
    return _open(key_figures_workbook(rows, exported_at=READ_AT))["Key figures"]


def _by_heading(sheet: Any, row: int) -> dict[str, Any]:
    return {heading: sheet.cell(row=row, column=i).value for i, heading in enumerate(HEADINGS, start=1)}


def test_key_figures_one_row_per_company_with_every_figure() -> None:
    sheet = _key_figures(
        [
            _row("Adatum", "Adatum DE", "EUR", _figures("100.10", "5", "-20")),
            _row("Adatum", "Adatum US", "USD", _figures("200", "6", "30")),
            _row("Fabrikam", None, None, None),
        ]
    )
    assert [c.value for c in sheet[4]] == list(HEADINGS)
    first = _by_heading(sheet, 5)
    assert first["Client"] == "Adatum"
    assert first["Company"] == "Adatum DE"
    assert first["Currency"] == "EUR"
    assert first["As of (UTC)"] == datetime(2026, 5, 19, 10, 22)
    assert first["State"] == "OK"
    assert first["Cash"] == 100.1
    assert first["Taxes due"] == 7.5
    assert first["Open sales quotes"] == 1
    assert first["Open sales orders (amount)"] == 2
    assert first["Unposted sales invoices"] == 3
    assert first["Purchase invoices due next week"] == 3
    assert first["Purchase invoices due next week (amount)"] == 30
    assert first["Overdue sales invoices"] == 2
    assert first["Overdue sales invoices (amount)"] == 5
    assert first["Overdue purchase invoices (amount)"] == 5
    assert first["Sales this month"] == 1000
    assert first["Forecast low point (13 weeks)"] == -20
    cash_column = HEADINGS.index("Cash") + 1
    assert sheet.cell(row=5, column=cash_column).number_format == '#,##0.00 "EUR";-#,##0.00 "EUR"'
    assert sheet.cell(row=6, column=cash_column).number_format == '#,##0.00 "USD";-#,##0.00 "USD"'
    assert sheet.cell(row=5, column=cash_column + 2).number_format == "#,##0"
    failed = _by_heading(sheet, 7)
    assert failed["Company"] is None
    assert failed["State"] == "Failed"
    assert failed["Cash"] is None
    assert failed["Note"] == "The client's Business Central environment does not exist."


def test_key_figures_show_the_mils_of_a_company_keeping_three_decimals() -> None:
    sheet = _key_figures(
        [
            _row("Gulf", "Gulf KW", "KWD", _figures("1234.567", "5", "-20")),
            _row("Adatum", "Adatum DE", "EUR", _figures("100.10", "5", "-20")),
        ]
    )
    cash_column = HEADINGS.index("Cash") + 1
    assert sheet.cell(row=5, column=cash_column).number_format == '#,##0.000 "KWD";-#,##0.000 "KWD"'
    assert sheet.cell(row=6, column=cash_column).number_format == '#,##0.00 "EUR";-#,##0.00 "EUR"'
    totals = {sheet.cell(row=r, column=1).value: r for r in range(8, sheet.max_row + 1)}
    assert sheet.cell(row=totals["Total KWD"], column=cash_column).number_format.startswith("#,##0.000 ")
    assert sheet.cell(row=totals["Total EUR"], column=cash_column).number_format.startswith("#,##0.00 ")


def test_key_figures_totals_are_per_currency_and_outside_the_filter() -> None:
    sheet = _key_figures(
        [
            _row("A", "A1", "EUR", _figures("100", "1", "-5")),
            _row("B", "B1", "USD", _figures("200", "2", "7")),
            _row("C", "C1", "EUR", _figures("0.50", "3", "9")),
            _row("D", None, None, None),
        ]
    )
    # Data rows 5-8, a blank row 9, then one total line per currency.
    assert sheet.auto_filter.ref == f"A4:{sheet.cell(row=4, column=len(HEADINGS)).column_letter}8"
    assert sheet.cell(row=9, column=1).value is None
    eur, usd = _by_heading(sheet, 10), _by_heading(sheet, 11)
    assert (eur["Client"], eur["Company"], eur["Currency"]) == ("Total EUR", "2 companies", "EUR")
    assert eur["Cash"] == 100.5
    assert eur["Overdue sales invoices (amount)"] == 4
    assert eur["Overdue sales invoices"] == 4
    assert eur["Forecast low point (13 weeks)"] is None
    assert (usd["Client"], usd["Cash"]) == ("Total USD", 200)
    assert sheet.max_row == 11
    assert sheet.print_area.endswith("$11")


def test_key_figures_never_add_amounts_of_companies_without_a_currency() -> None:
    # Neither BC says its local currency: one may keep DKK, the other USD.
    sheet = _key_figures(
        [_row("A", "A1", "", _figures("745", "1", "-5")), _row("B", "B1", "", _figures("100", "2", "7"))]
    )
    unknown = _by_heading(sheet, 8)
    assert (unknown["Client"], unknown["Company"], unknown["Currency"]) == ("Total (no currency)", "2 companies", None)
    assert unknown["Cash"] is None and unknown["Overdue sales invoices (amount)"] is None
    assert unknown["Overdue sales invoices"] == 4


def _in_reporting_currency(row: KeyFiguresRow, currency: CompanyCurrency, reporting: str) -> KeyFiguresRow:
    """The row's amounts in ``reporting`` as the dashboard's query gives them."""
    assert row.figures is not None
    amounts = {
        column.key: converted_amount(value, currency, reporting)
        for column in FIGURE_COLUMNS
        if column.kind is ColumnKind.AMOUNT and isinstance(value := column.read(row.figures), Decimal)
    }
    return replace(row, amounts=amounts)


def test_key_figures_add_up_in_the_reporting_currency_and_say_who_is_left_out() -> None:
    eur = CompanyCurrency(local_currency="EUR", rates_read=True, rates_unavailable=None, rate=None)
    # 1 EUR = 1.08 USD in the client's BC: 216 USD are 200 EUR.
    usd = CompanyCurrency("USD", rates_read=True, rates_unavailable=None, rate=RateInEffect(D("1.08"), AS_OF))
    gbp_without_rate = CompanyCurrency("GBP", rates_read=True, rates_unavailable=None, rate=None)
    rows = [
        _in_reporting_currency(_row("A", "A1", "EUR", _figures("100", "10")), eur, "EUR"),
        _in_reporting_currency(_row("B", "B1", "USD", _figures("216", "10.80")), usd, "EUR"),
        _in_reporting_currency(_row("C", "C1", "GBP", _figures("999", "999")), gbp_without_rate, "EUR"),
        _row("D", None, None, None),
    ]
    sheet = _open(key_figures_workbook(rows, exported_at=READ_AT, reporting_currency="EUR"))["Key figures"]
    assert "then in EUR at each client's own Business Central rates" in sheet.cell(row=2, column=1).value
    # Rows 5-8, a blank row, the totals per currency (EUR, GBP, USD), then the one in EUR.
    assert [sheet.cell(row=r, column=1).value for r in range(10, 14)] == [
        "Total EUR",
        "Total GBP",
        "Total USD",
        "Total in EUR",
    ]
    total = _by_heading(sheet, 13)
    assert (total["Company"], total["Currency"]) == ("2 of 3 companies", "EUR")
    assert total["Cash"] == 300
    assert total["Overdue sales invoices (amount)"] == 20
    # Counts need no rate: those of the companies in the total.
    assert total["Overdue sales invoices"] == 4
    assert total["Forecast low point (13 weeks)"] is None
    cash_column = HEADINGS.index("Cash") + 1
    assert sheet.cell(row=13, column=cash_column).number_format == '#,##0.00 "EUR";-#,##0.00 "EUR"'
    assert _by_heading(sheet, 7)["Note"] == "Not in the EUR total: no EUR rate in this client's Business Central"
    assert _by_heading(sheet, 5)["Note"] is None
    assert sheet.print_area.endswith("$13")
    # In the accountant's language, the reason in the dashboard's own words.
    german = _open(key_figures_workbook(rows, exported_at=READ_AT, language="de", reporting_currency="EUR"))
    note = german["Kennzahlen"].cell(row=7, column=len(HEADINGS)).value
    assert note == "Nicht in der Summe in EUR: kein EUR-Kurs im Business Central dieses Mandanten"


def test_key_figures_are_set_up_to_print() -> None:
    sheet = _key_figures([_row("A", "A1", "EUR", _figures("1"))])
    assert sheet.freeze_panes == "C5"
    assert sheet.print_title_rows == "$4:$4"
    assert sheet.page_setup.orientation == "landscape"
    # 24 columns: across three pages, client and company repeated on each, rather than one
    # page at a third of the size.
    assert sheet.page_setup.fitToWidth == 3
    assert sheet.print_title_cols == "$A:$B"
    assert sheet.page_setup.fitToHeight == 0
    assert sheet.sheet_properties.pageSetUpPr.fitToPage
    assert sheet.oddHeader.right.text == "2026-05-19 10:22 UTC"
    assert sheet.oddFooter.center.text == "Page &P of &N"


def test_key_figures_rows_come_from_the_dashboard_rows() -> None:
    figures = _figures("42.00")
    rows = key_figures_rows(
        [
            DashboardRow(
                client_id=uuid.uuid4(),
                client_name="A",
                company_id=uuid.uuid4(),
                company_name="A1",
                state="ok",
                as_of=READ_AT,
                currency_code="EUR",
                web_client_link=None,
                values={},
                figures=figures.model_dump(mode="json"),
                failure=None,
            ),
            DashboardRow(
                client_id=uuid.uuid4(),
                client_name="B",
                company_id=None,
                company_name=None,
                state="failed",
                as_of=None,
                currency_code=None,
                web_client_link=None,
                values={},
                figures={"cash": "not figures"},
                failure=FailureSummary(
                    kind="tenant_not_found", summary="Microsoft Entra ID does not know the tenant.", fix="Check it."
                ),
            ),
            DashboardRow(
                client_id=uuid.uuid4(),
                client_name="C",
                company_id=None,
                company_name=None,
                state="failed",
                as_of=None,
                currency_code=None,
                web_client_link=None,
                values={},
                figures=None,
                failure=FailureSummary(kind="timeout", summary="Business Central did not answer in time.", fix="Wait."),
            ),
        ]
    )
    assert rows[0].figures == figures
    assert rows[1].figures is None
    assert rows[1].note == "The stored figures could not be read; refresh the company."
    assert rows[2].note == "Business Central did not answer in time."


def test_an_empty_firm_still_gets_a_workbook() -> None:
    sheet = _key_figures([])
    assert [c.value for c in sheet[4]] == list(HEADINGS)
    assert sheet.max_row == 4


@pytest.mark.parametrize(
    ("name", "plain", "full"),
    [
        ("CRONUS USA, Inc.", "CRONUS USA, Inc. 2026-05-19.xlsx", "CRONUS USA, Inc. 2026-05-19.xlsx"),
        ("Mühlbach Gruppe", "Muhlbach Gruppe 2026-05-19.xlsx", "Mühlbach Gruppe 2026-05-19.xlsx"),
        ('a"b\\c/d;e\r\nf', "a b c d_e f 2026-05-19.xlsx", "a b c d;e f 2026-05-19.xlsx"),
        ("../../etc/passwd", "etc passwd 2026-05-19.xlsx", "etc passwd 2026-05-19.xlsx"),
        ("株式会社", "workbook 2026-05-19.xlsx", "株式会社 2026-05-19.xlsx"),
        ("", "workbook 2026-05-19.xlsx", "workbook 2026-05-19.xlsx"),
        # Bidirectional controls, which would show the name reordered, go: every one of them.
        (
            "Acme\u202e \u200e\u200f\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069\u061cLtd",
            "Acme Ltd 2026-05-19.xlsx",
            "Acme Ltd 2026-05-19.xlsx",
        ),
        ("\u202egpj.exe", "gpj.exe 2026-05-19.xlsx", "gpj.exe 2026-05-19.xlsx"),
    ],
)
def test_file_names_are_safe_in_the_header_and_on_disk(name: str, plain: str, full: str) -> None:
    disposition = attachment_disposition(name, AS_OF)
    assert disposition.isascii()
    assert "\r" not in disposition and "\n" not in disposition
    prefix = f"attachment; filename=\"{plain}\"; filename*=UTF-8''"
    assert disposition.startswith(prefix), disposition
    assert unquote(disposition[len(prefix) :]) == full


def test_a_very_long_name_is_cut() -> None:
    disposition = attachment_disposition("x" * 5000, AS_OF)
    assert len(disposition) < 400


# ---------------------------------------------------------------- in the accountant's language


def test_a_company_workbook_in_french() -> None:
    workbook = _open(
        company_workbook(
            _statements(),
            client_name="Mühlbach Gruppe",
            company_name="CRONUS France",
            currency_code="EUR",
            as_of=AS_OF,
            language="fr",
        )
    )
    assert workbook.sheetnames == [
        "Bilan",
        "Compte de résultat",
        "Tableau des flux de trésorerie",
        "Résultats non distribués",
        "Balance générale",
        "Balance âgée clients",
        "Balance âgée fournisseurs",
    ]
    balance_sheet = workbook["Bilan"]
    assert [c.value for c in balance_sheet[5][:2]] == ["Libellé", "Solde"]
    assert balance_sheet["A2"].value == "Bilan — au 19/05/2026"
    assert balance_sheet["A3"].value.startswith(
        "Client : Mühlbach Gruppe · Montants en EUR · Lu dans Business Central le "
    )
    assert balance_sheet.oddHeader.right.text == "Au 19/05/2026"
    assert balance_sheet.oddFooter.center.text == "Page &P sur &N"
    assert workbook["Compte de résultat"]["B5"].value == "Mouvement net"
    assert [c.value for c in workbook["Balance générale"][5]] == [
        "N°",
        "Nom",
        "Débits de la période",
        "Crédits de la période",
        "Solde débiteur",
        "Solde créditeur",
    ]
    aged = workbook["Balance âgée clients"]
    assert [c.value for c in aged[5]] == [
        "N°",
        "Client",
        "Non échu",
        "1–30 jours de retard",
        "31–60 jours de retard",
        "Plus de 60 jours de retard",
        "Solde dû",
    ]


def test_key_figures_in_french_with_french_dates() -> None:
    workbook = _open(
        key_figures_workbook(
            [_row("Adatum", "Adatum DE", "EUR", _figures("100.10", "5", "-20"))], exported_at=READ_AT, language="fr"
        )
    )
    sheet = workbook["Chiffres clés"]
    headings = [c.value for c in sheet[4]]
    assert headings[:5] == ["Client", "Société", "Devise", "Au (UTC)", "État"]
    assert "Trésorerie" in headings and "TVA à payer" in headings and "Créances clients échues" in headings
    assert sheet.cell(row=5, column=5).value == "OK"
    assert sheet.cell(row=5, column=4).number_format == "dd/mm/yyyy hh:mm"
    assert sheet["A1"].value == "Chiffres clés de tous les clients"
    totals = [sheet.cell(row=r, column=1).value for r in range(6, sheet.max_row + 1)]
    assert "Total EUR" in totals
    assert "1 société" in [sheet.cell(row=r, column=2).value for r in range(6, sheet.max_row + 1)]


def test_a_soft_hyphen_of_a_translation_stays_out_of_the_cells() -> None:
    workbook = _open(key_figures_workbook([], exported_at=READ_AT, language="de"))
    headings = [c.value for c in workbook["Kennzahlen"][4]]
    assert "Überfällige Verbindlichkeiten" in headings
    assert not any("\u00ad" in str(heading) for heading in headings)
