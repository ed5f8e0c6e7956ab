"""One company's workbook: a sheet per statement, formatted and set up to print.

Each sheet opens with the company, the statement and its date or period, and a note of
the client, the currency and when BC was read; then the column headings (repeated on
every printed page) and the lines. Amounts are values, not formulas: the workbook is a
record of what BC said when it was read, and reads the same in any viewer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date
from decimal import Decimal
from typing import Any

from openpyxl.styles import Alignment
from openpyxl.utils import get_column_letter

from hub_common.i18n import DEFAULT_LANGUAGE, N_, Translator, translator
from hub_common.money import ZERO
from hub_common.statements import AgedReport, CompanyStatements, Statement, TrialBalance, TrialBalanceLine
from hub_gateway.reports.excel import (
    BOLD,
    GRAND_TOTAL_BORDER,
    NOTE_FONT,
    SUBTITLE_FONT,
    TITLE_FONT,
    TOTAL_BORDER,
    PageHeader,
    day_text,
    moment_text,
    money_format,
    new_workbook,
    put_number,
    put_text,
    set_up_printing,
    set_widths,
    shown_decimals,
    style_header_row,
    workbook_bytes,
)

HEADER_ROW = 5
FIRST_LINE_ROW = HEADER_ROW + 1


@dataclass(frozen=True)
class _Context:
    client_name: str
    company_name: str
    currency_code: str
    as_of: date
    read_at_text: str
    t: Translator
    amount_decimals: int
    # The client's date when the statements were read: BC ages what is open on it.
    today: date

    def day(self, day: date) -> str:
        return day_text(day, self.t.language)

    @property
    def money(self) -> str:
        return money_format(self.currency_code, self.amount_decimals)

    @property
    def statement_money(self) -> str:
        """A financial statement's amounts: zero blank, as BC prints them."""
        return money_format(self.currency_code, self.amount_decimals, blank_zero=True)


def _title_block(sheet: Any, context: _Context, title: str, period: str) -> None:
    put_text(sheet, 1, 1, context.company_name, font=TITLE_FONT)
    put_text(sheet, 2, 1, f"{title} — {period}", font=SUBTITLE_FONT)
    t = context.t
    currency = (
        t.gettext("Amounts in %(currency)s", currency=context.currency_code)
        if context.currency_code
        else t.gettext("Amounts in local currency")
    )
    client = t.gettext("Client: %(client)s", client=context.client_name)
    read = t.gettext("Read from Business Central on %(time)s", time=context.read_at_text)
    put_text(sheet, 3, 1, f"{client} · {currency} · {read}", font=NOTE_FONT)


def _headings(sheet: Any, headings: Sequence[str]) -> None:
    for column, heading in enumerate(headings, start=1):
        put_text(sheet, HEADER_ROW, column, heading)
    style_header_row(sheet, HEADER_ROW, len(headings))


# The title block's rows and their fonts' sizes in points (_title_block).
_TITLE_ROWS = ((1, TITLE_FONT.sz), (2, SUBTITLE_FONT.sz), (3, NOTE_FONT.sz))


def _wrap_title_block(sheet: Any, columns: int) -> None:
    """The company's name, the statement and the note under them across the printed columns,
    wrapped: on one line a long client or company name ran past the print area, and that
    part was not printed."""
    width = sum(sheet.column_dimensions[get_column_letter(column)].width or 8.43 for column in range(1, columns + 1))
    for row, points in _TITLE_ROWS:
        cell = sheet.cell(row=row, column=1)
        if not cell.value:
            continue
        cell.alignment = Alignment(wrap_text=True, vertical="top")
        sheet.merge_cells(start_row=row, start_column=1, end_row=row, end_column=columns)
        # A column's width counts characters of the 11-point default font; a wrapped merged
        # row does not grow by itself, so it is given a line's height for each line.
        per_line = max(1, int(width * 11 / points * 0.9))
        sheet.row_dimensions[row].height = math.ceil(len(str(cell.value)) / per_line) * points * 1.4


def _print(sheet: Any, context: _Context, title: str, *, last_row: int, columns: int, landscape: bool) -> None:
    sheet.freeze_panes = f"A{FIRST_LINE_ROW}"
    _wrap_title_block(sheet, columns)
    set_up_printing(
        sheet,
        last_row=last_row,
        last_column=columns,
        header_row=HEADER_ROW,
        landscape=landscape,
        page_header=PageHeader(
            left=context.company_name,
            center=title,
            right=context.t.gettext("As of %(day)s", day=context.day(context.as_of)),
        ),
        t=context.t,
    )


def _period(context: _Context, start: date | None, end: date) -> str:
    if start is None:
        return context.t.gettext("as of %(day)s", day=context.day(end))
    return context.t.gettext("%(start)s to %(end)s", start=context.day(start), end=context.day(end))


def _statement_sheet(
    workbook: Any, context: _Context, title: str, amount_heading: str, statement: Statement, setup_field: str
) -> None:
    """A financial report: BC's headers in bold, details indented as BC indents them,
    BC's total lines in bold over a rule; spacer lines stay empty. One BC could not compute
    says why, and where in BC it is set (``setup_field`` of General Ledger Setup)."""
    sheet = workbook.create_sheet(title)
    _title_block(sheet, context, title, _period(context, statement.period_start, statement.period_end))
    _headings(sheet, [context.t.gettext("Description"), amount_heading])
    row = FIRST_LINE_ROW
    if statement.unavailable is not None:
        for note in (
            context.t.gettext(
                "Business Central could not compute this statement: %(reason)s", reason=statement.unavailable
            ),
            context.t.gettext(
                "It is computed from the financial report General Ledger Setup names in “%(field)s”: "
                "if downloading the workbook again later does not help, check that field in the client's "
                "Business Central.",
                field=setup_field,
            ),
        ):
            cell = put_text(sheet, row, 1, note, font=NOTE_FONT)
            cell.alignment = Alignment(wrap_text=True, vertical="top")
            sheet.merge_cells(start_row=row, start_column=1, end_row=row, end_column=2)
            # Wrapped text does not grow a merged row by itself: room for a few lines.
            sheet.row_dimensions[row].height = 15 * (1 + len(note) // 70)
            row += 1
        set_widths(sheet, [60, 20])
        _print(sheet, context, title, last_row=row - 1, columns=2, landscape=False)
        return
    for line in statement.lines:
        if line.line_type != "spacer":
            description = put_text(sheet, row, 1, line.description)
            description.alignment = Alignment(indent=line.indentation)
            if line.line_type == "header":
                description.font = BOLD
                # BC calls any bold row of posting accounts a header, and one with a
                # totaling range has its sum ("Total Current Assets" in bold); a heading
                # without one has no amount (0).
                if line.amount:
                    put_number(sheet, row, 2, line.amount, context.statement_money).font = BOLD
            else:
                amount = put_number(sheet, row, 2, line.amount, context.statement_money)
                if line.line_type == "total":
                    description.font = BOLD
                    amount.font = BOLD
                    amount.border = TOTAL_BORDER
        row += 1
    if not statement.lines:
        put_text(
            sheet, row, 1, context.t.gettext("Business Central returned no lines for this statement."), font=NOTE_FONT
        )
        row += 1
    set_widths(sheet, [60, 20])
    _print(sheet, context, title, last_row=row - 1, columns=2, landscape=False)


def _sum(values: Sequence[Decimal | None]) -> Decimal:
    return sum((value for value in values if value is not None), ZERO)


_TRIAL_BALANCE_AMOUNTS: tuple[Callable[[TrialBalanceLine], Decimal | None], ...] = (
    lambda line: line.net_change_debit,
    lambda line: line.net_change_credit,
    lambda line: line.balance_debit,
    lambda line: line.balance_credit,
)


def _trial_balance_sheet(workbook: Any, context: _Context, trial_balance: TrialBalance) -> None:
    """Every G/L account; headings and totals in bold. The grand total sums the posting
    accounts only, since BC's total accounts already sum the ones above them."""
    t = context.t
    title = t.gettext(SHEET_TITLES[4])
    sheet = workbook.create_sheet(title)
    _title_block(sheet, context, title, _period(context, trial_balance.period_start, trial_balance.period_end))
    _headings(
        sheet,
        [
            t.gettext("No."),
            t.gettext("Name"),
            t.gettext("Debits in period"),
            t.gettext("Credits in period"),
            t.gettext("Balance debit"),
            t.gettext("Balance credit"),
        ],
    )
    row = FIRST_LINE_ROW
    for line in trial_balance.lines:
        number = put_text(sheet, row, 1, line.number)
        name = put_text(sheet, row, 2, line.name)
        cells = [
            put_number(sheet, row, 3 + i, amount(line), context.money)
            for i, amount in enumerate(_TRIAL_BALANCE_AMOUNTS)
        ]
        if not line.is_posting:
            for cell in (number, name, *cells):
                cell.font = BOLD
        row += 1
    posting = [line for line in trial_balance.lines if line.is_posting]
    put_text(sheet, row, 2, t.gettext("Total of posting accounts"), font=BOLD)
    for i, amount in enumerate(_TRIAL_BALANCE_AMOUNTS):
        cell = put_number(sheet, row, 3 + i, _sum([amount(line) for line in posting]), context.money)
        cell.font = BOLD
        cell.border = GRAND_TOTAL_BORDER
    set_widths(sheet, [12, 44, 18, 18, 18, 18])
    _print(sheet, context, title, last_row=row, columns=6, landscape=True)


def _aged_sheet(workbook: Any, context: _Context, title: str, party: str, report: AgedReport) -> None:
    """One row per customer or vendor, by how long the amounts are overdue, and a grand
    total (BC's own total row is left out by the fetcher)."""
    sheet = workbook.create_sheet(title)
    t = context.t
    _title_block(sheet, context, title, _period(context, None, report.as_of))
    if report.as_of < context.today:
        # BC's aging API sums the entries open when it is asked, by their due dates as seen
        # from the as-of date: it has no posting-date cut-off, unlike BC's printed aging.
        note = put_text(
            sheet,
            HEADER_ROW - 1,
            1,
            t.gettext(
                "Business Central ages what is open on %(today)s by due date as seen from %(day)s: invoices "
                "posted or paid after %(day)s count as they stand now, so the totals need not match the "
                "balance sheet of %(day)s.",
                today=context.day(context.today),
                day=context.day(report.as_of),
            ),
            font=NOTE_FONT,
        )
        # Across the sheet's columns, wrapped: on one line it ran past the printed page.
        note.alignment = Alignment(wrap_text=True, vertical="top")
        sheet.merge_cells(start_row=HEADER_ROW - 1, start_column=1, end_row=HEADER_ROW - 1, end_column=7)
        sheet.row_dimensions[HEADER_ROW - 1].height = 45
    days = report.period_days
    _headings(
        sheet,
        [
            t.gettext("No."),
            party,
            t.gettext("Not yet due"),
            t.gettext("%(first)s–%(last)s days overdue", first=1, last=days),
            t.gettext("%(first)s–%(last)s days overdue", first=days + 1, last=2 * days),
            t.gettext("Over %(days)s days overdue", days=2 * days),
            t.gettext("Balance due"),
        ],
    )
    row = FIRST_LINE_ROW
    for line in report.lines:
        put_text(sheet, row, 1, line.number)
        put_text(sheet, row, 2, line.name)
        amounts = (line.current, line.period1, line.period2, line.period3, line.balance_due)
        for i, amount in enumerate(amounts):
            put_number(sheet, row, 3 + i, amount, context.money)
        row += 1
    if not report.lines:
        put_text(sheet, row, 2, t.gettext("No open items."), font=NOTE_FONT)
        row += 1
    put_text(sheet, row, 2, t.gettext("Total"), font=BOLD)
    totals = (
        _sum([line.current for line in report.lines]),
        _sum([line.period1 for line in report.lines]),
        _sum([line.period2 for line in report.lines]),
        _sum([line.period3 for line in report.lines]),
        _sum([line.balance_due for line in report.lines]),
    )
    for i, amount in enumerate(totals):
        cell = put_number(sheet, row, 3 + i, amount, context.money)
        cell.font = BOLD
        cell.border = GRAND_TOTAL_BORDER
    set_widths(sheet, [12, 40, 17, 17, 17, 17, 17])
    _print(sheet, context, title, last_row=row, columns=7, landscape=True)


# In English; each is a catalogue message, and a translation must keep to Excel's 31
# characters for a sheet name (tests/unit/test_message_catalogue.py checks).
SHEET_TITLES = (
    N_("Balance Sheet"),
    N_("Income Statement"),
    N_("Cash Flow Statement"),
    N_("Retained Earnings"),
    N_("Trial Balance"),
    N_("Aged Receivables"),
    N_("Aged Payables"),
)


def _amount_decimals(statements: CompanyStatements) -> int:
    """Decimals the workbook shows (``shown_decimals`` of every amount in it)."""
    amounts: list[Decimal | None] = []
    for statement in (
        statements.balance_sheet,
        statements.income_statement,
        statements.cash_flow_statement,
        statements.retained_earnings,
    ):
        amounts += [line.amount for line in statement.lines]
    for account in statements.trial_balance.lines:
        amounts += [account.net_change_debit, account.net_change_credit, account.balance_debit, account.balance_credit]
    for report in (statements.aged_receivables, statements.aged_payables):
        for party in report.lines:
            amounts += [party.current, party.period1, party.period2, party.period3, party.balance_due]
    return shown_decimals(amounts)


def company_workbook(
    statements: CompanyStatements,
    *,
    client_name: str,
    company_name: str,
    currency_code: str | None,
    as_of: date,
    today_at_client: date | None = None,
    language: str = DEFAULT_LANGUAGE,
) -> bytes:
    """The company's seven statements as an xlsx file (bytes), in ``language``;
    ``today_at_client`` is the client's date at the read (None: ``as_of``)."""
    t = translator(language)
    context = _Context(
        client_name=client_name,
        company_name=company_name,
        currency_code=currency_code or "",
        as_of=as_of,
        read_at_text=moment_text(statements.read_at.astimezone(UTC), language),
        t=t,
        amount_decimals=_amount_decimals(statements),
        today=today_at_client or as_of,
    )
    titles = [t.gettext(title) for title in SHEET_TITLES]
    workbook = new_workbook(
        t.gettext("%(company)s — statements as of %(day)s", company=company_name, day=context.day(as_of))
    )
    balance, net_change = t.gettext("Balance"), t.gettext("Net change")
    # General Ledger Setup's fields, as BC names them, that choose each statement's report.
    _statement_sheet(workbook, context, titles[0], balance, statements.balance_sheet, "Fin. Rep. for Balance Sheet")
    _statement_sheet(
        workbook, context, titles[1], net_change, statements.income_statement, "Fin. Rep. for Income Stmt."
    )
    _statement_sheet(
        workbook, context, titles[2], net_change, statements.cash_flow_statement, "Fin. Rep. for Cash Flow Stmt"
    )
    _statement_sheet(
        workbook, context, titles[3], net_change, statements.retained_earnings, "Fin. Rep. for Retained Earn."
    )
    _trial_balance_sheet(workbook, context, statements.trial_balance)
    _aged_sheet(workbook, context, titles[5], t.gettext("Customer"), statements.aged_receivables)
    _aged_sheet(workbook, context, titles[6], t.gettext("Vendor"), statements.aged_payables)
    return workbook_bytes(workbook)
