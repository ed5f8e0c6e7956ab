"""The key figures of every company of every client of a firm, in one sheet.

One row per company (a client whose companies are not known yet gets one row too), with
an autofilter over the rows and the headings frozen. Each row is in its company's own
currency, and there is one "Total" line for each currency the rows use, below the filtered
range so sorting and filtering never mix them in. With a reporting currency chosen, a last
line adds up every company in it, each converted with its own Business Central's rate, as
the dashboard converts them (``dashboard/currency.py``); a company that cannot be converted
stays out of that line and its note says why. The forecast's low point is not totalled:
each company's low point falls in its own week, so their sum means nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from openpyxl.styles import Alignment
from openpyxl.utils import get_column_letter
from pydantic import ValidationError

from hub_common.events import CompanyFigures
from hub_common.i18n import DEFAULT_LANGUAGE, N_, Translator, translator
from hub_common.money import ZERO
from hub_gateway.dashboard.currency import REASON_MESSAGES, ConvertedAmount
from hub_gateway.dashboard.queries import DashboardRow
from hub_gateway.readmodel.columns import FIGURE_COLUMNS, ColumnKind, FigureColumn
from hub_gateway.reports.excel import (
    BOLD,
    COUNT_FORMAT,
    GRAND_TOTAL_BORDER,
    NOTE_FONT,
    TITLE_FONT,
    PageHeader,
    currency_code,
    datetime_format,
    day_text,
    moment_text,
    money_format,
    new_workbook,
    pages_wide,
    put_number,
    put_text,
    set_up_printing,
    set_widths,
    shown_decimals,
    style_header_row,
    workbook_bytes,
)

SHEET_TITLE = N_("Key figures")
HEADER_ROW = 4
FIRST_ROW = HEADER_ROW + 1


@dataclass(frozen=True)
class KeyFiguresRow:
    """One company (or a client without known companies) and its last figures."""

    client_name: str
    company_name: str | None
    currency_code: str | None
    as_of: datetime | None
    state: str
    figures: CompanyFigures | None
    note: str | None
    # With a reporting currency: each amount in it, or why it cannot be.
    amounts: Mapping[str, ConvertedAmount] | None = None

    def not_converted(self) -> ConvertedAmount | None:
        """An amount of the row the reporting currency could not take (one is enough: a
        company's amounts are converted with one rate, or none)."""
        return next((amount for amount in (self.amounts or {}).values() if amount.value is None), None)


Value = Decimal | int | None

# The headings in English, each a catalogue message: the sheet says them in its language.
LEADING_HEADINGS = (N_("Client"), N_("Company"), N_("Currency"), N_("As of (UTC)"), N_("State"))
TRAILING_HEADINGS = (N_("Note"),)
HEADINGS = (*LEADING_HEADINGS, *(column.label for column in FIGURE_COLUMNS), *TRAILING_HEADINGS)
FIRST_FIGURE_COLUMN = len(LEADING_HEADINGS) + 1
NOTE_COLUMN = len(HEADINGS)
STATE_NAMES = {
    "ok": N_("OK"),
    "failed": N_("Failed"),
    "queued": N_("Queued"),
    "refreshing": N_("Refreshing"),
    "waiting": N_("Waiting"),
    "removed": N_("Removed"),
}


def key_figures_rows(rows: Sequence[DashboardRow]) -> list[KeyFiguresRow]:
    """The dashboard's rows as the workbook shows them; figures that no longer read as
    ``CompanyFigures`` are left out of the row (and its note says so), never guessed."""
    result: list[KeyFiguresRow] = []
    for row in rows:
        figures: CompanyFigures | None = None
        note = row.failure.summary if row.failure is not None else None
        if row.figures is not None:
            try:
                figures = CompanyFigures.model_validate(row.figures)
            except ValidationError:
                note = N_("The stored figures could not be read; refresh the company.")
        result.append(
            KeyFiguresRow(
                client_name=row.client_name,
                company_name=row.company_name,
                currency_code=row.currency_code,
                as_of=row.as_of,
                state=row.state,
                figures=figures,
                note=note,
                amounts=row.amounts,
            )
        )
    return result


def _naive_utc(moment: datetime) -> datetime:
    """Excel has no time zones: the time in UTC, as the column heading says."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _figure_format(column: FigureColumn, money: str) -> str:
    return money if column.kind is ColumnKind.AMOUNT else COUNT_FORMAT


def _note(row: KeyFiguresRow, reporting_currency: str | None, t: Translator) -> str | None:
    """A failure's summary or a note about the figures (catalogue messages both), and why
    the row is not in the reporting currency's total."""
    notes = [t.gettext(row.note)] if row.note else []
    missing = row.not_converted() if reporting_currency is not None and row.figures is not None else None
    if missing is not None and missing.not_converted is not None:
        reason = t.gettext(REASON_MESSAGES[missing.not_converted], currency=reporting_currency)
        notes.append(t.gettext("Not in the %(currency)s total: %(reason)s", currency=reporting_currency, reason=reason))
    return "\n".join(notes) or None


def _write_row(sheet: Any, row_number: int, row: KeyFiguresRow, reporting_currency: str | None, t: Translator) -> None:
    put_text(sheet, row_number, 1, row.client_name)
    put_text(sheet, row_number, 2, row.company_name)
    put_text(sheet, row_number, 3, currency_code(row.currency_code))
    as_of = sheet.cell(row=row_number, column=4)
    if row.as_of is not None:
        as_of.value = _naive_utc(row.as_of)
    as_of.number_format = datetime_format(t.language)
    put_text(sheet, row_number, 5, t.gettext(STATE_NAMES.get(row.state, row.state)))
    money = money_format(row.currency_code, _decimals([row.figures] if row.figures is not None else []))
    for offset, column in enumerate(FIGURE_COLUMNS):
        value = column.read(row.figures) if row.figures is not None else None
        put_number(sheet, row_number, FIRST_FIGURE_COLUMN + offset, value, _figure_format(column, money))
    put_text(sheet, row_number, NOTE_COLUMN, _note(row, reporting_currency, t))


def _decimals(figures: Sequence[CompanyFigures]) -> int:
    """As many decimals as the companies' books keep (three for KWD, BHD or OMR)."""
    return shown_decimals(
        value
        for one in figures
        for column in FIGURE_COLUMNS
        if column.kind is ColumnKind.AMOUNT and isinstance(value := column.read(one), Decimal)
    )


def _total_cell(sheet: Any, row_number: int, column: int, total: Value, number_format: str) -> None:
    cell = put_number(sheet, row_number, column, total, number_format)
    cell.font = BOLD
    cell.border = GRAND_TOTAL_BORDER


def _sum(values: Sequence[Value], kind: ColumnKind) -> Value:
    present = [value for value in values if value is not None]
    return sum(present, ZERO if kind is ColumnKind.AMOUNT else 0) if present else None


def _write_reporting_total(
    sheet: Any, row_number: int, rows: Sequence[KeyFiguresRow], reporting_currency: str, t: Translator
) -> int:
    """Every company whose amounts the reporting currency takes, added up in it; returns the
    row written."""
    with_figures = [row for row in rows if row.figures is not None]
    converted = [row for row in with_figures if row.not_converted() is None]
    put_text(sheet, row_number, 1, t.gettext("Total in %(currency)s", currency=reporting_currency), font=BOLD)
    companies = t.ngettext(
        "%(converted)s of %(count)s company",
        "%(converted)s of %(count)s companies",
        len(with_figures),
        converted=len(converted),
    )
    put_text(sheet, row_number, 2, companies, font=BOLD)
    put_text(sheet, row_number, 3, reporting_currency, font=BOLD)
    converted_amounts = [
        Decimal(amount.value)
        for row in converted
        for amount in (row.amounts or {}).values()
        if amount is not None and amount.value is not None
    ]
    money = money_format(reporting_currency, shown_decimals(converted_amounts))
    for offset, column in enumerate(FIGURE_COLUMNS):
        values: list[Value] = []
        for row in converted:
            if column.kind is ColumnKind.AMOUNT:
                amount = (row.amounts or {}).get(column.key)
                values.append(Decimal(amount.value) if amount is not None and amount.value is not None else None)
            else:
                values.append(column.read(row.figures) if row.figures is not None else None)
        total = _sum(values, column.kind) if column.totalled else None
        _total_cell(sheet, row_number, FIRST_FIGURE_COLUMN + offset, total, _figure_format(column, money))
    return row_number


def _write_totals(sheet: Any, row_number: int, rows: Sequence[KeyFiguresRow], t: Translator) -> int:
    """One total line per currency over the rows that have figures; returns the last row."""
    by_currency: dict[str, list[CompanyFigures]] = {}
    for row in rows:
        if row.figures is not None:
            by_currency.setdefault(currency_code(row.currency_code), []).append(row.figures)
    last = row_number - 1
    for code in sorted(by_currency):
        figures = by_currency[code]
        total_of = t.gettext("Total %(currency)s", currency=code) if code else t.gettext("Total (no currency)")
        put_text(sheet, row_number, 1, total_of, font=BOLD)
        companies = t.ngettext("%(count)s company", "%(count)s companies", len(figures))
        put_text(sheet, row_number, 2, companies, font=BOLD)
        put_text(sheet, row_number, 3, code, font=BOLD)
        money = money_format(code, _decimals(figures))
        for offset, column in enumerate(FIGURE_COLUMNS):
            # Companies whose BC does not say their currency may each keep a different one:
            # their counts add up, their amounts do not.
            adds_up = column.totalled and (code or column.kind is not ColumnKind.AMOUNT)
            total = _sum([column.read(f) for f in figures], column.kind) if adds_up else None
            _total_cell(sheet, row_number, FIRST_FIGURE_COLUMN + offset, total, _figure_format(column, money))
        last = row_number
        row_number += 1
    return last


def key_figures_workbook(
    rows: Sequence[KeyFiguresRow],
    *,
    exported_at: datetime,
    language: str = DEFAULT_LANGUAGE,
    reporting_currency: str | None = None,
) -> bytes:
    """The firm's key figures as an xlsx file (bytes), in ``language``; with a reporting
    currency (the rows' ``amounts`` in it) a last total in that currency."""
    t = translator(language)
    exported = exported_at.astimezone(UTC)
    exported_text = moment_text(exported, language)
    title = t.gettext("Key figures of every client")
    workbook = new_workbook(t.gettext("Key figures %(day)s", day=day_text(exported.date(), language)))
    sheet = workbook.create_sheet(t.gettext(SHEET_TITLE))
    put_text(sheet, 1, 1, title, font=TITLE_FONT)
    if reporting_currency is None:
        explained = t.gettext(
            "Exported %(time)s · each company's figures are as of the time shown, in its own currency · "
            "totals are per currency",
            time=exported_text,
        )
    else:
        explained = t.gettext(
            "Exported %(time)s · each company's figures are as of the time shown, in its own currency · "
            "totals are per currency, then in %(currency)s at each client's own Business Central rates",
            time=exported_text,
            currency=reporting_currency,
        )
    put_text(sheet, 2, 1, explained, font=NOTE_FONT)
    for column, heading in enumerate(HEADINGS, start=1):
        put_text(sheet, HEADER_ROW, column, t.gettext(heading))
    style_header_row(sheet, HEADER_ROW, len(HEADINGS))
    sheet.row_dimensions[HEADER_ROW].height = 45
    row_number = FIRST_ROW
    for row in rows:
        _write_row(sheet, row_number, row, reporting_currency, t)
        row_number += 1
    last_data_row = max(row_number - 1, HEADER_ROW)
    last_column = get_column_letter(len(HEADINGS))
    sheet.auto_filter.ref = f"A{HEADER_ROW}:{last_column}{last_data_row}"
    sheet.freeze_panes = f"C{FIRST_ROW}"
    # A blank line between the rows and the totals keeps the totals out of the filter.
    last_row = _write_totals(sheet, last_data_row + 2, rows, t)
    if reporting_currency is not None:
        last_row = _write_reporting_total(sheet, max(last_row, last_data_row + 1) + 1, rows, reporting_currency, t)
    last_row = max(last_row, last_data_row)
    for row_index in range(FIRST_ROW, last_data_row + 1):
        sheet.cell(row=row_index, column=NOTE_COLUMN).alignment = Alignment(wrap_text=True, vertical="top")
    widths = [28.0, 28.0, 9.0, 17.0, 10.0, *([15.0] * len(FIGURE_COLUMNS)), 40.0]
    set_widths(sheet, widths)
    set_up_printing(
        sheet,
        last_row=last_row,
        last_column=len(HEADINGS),
        header_row=HEADER_ROW,
        landscape=True,
        page_header=PageHeader(left=title, center="", right=exported_text),
        t=t,
        # Client and company on every page across.
        pages_wide=pages_wide(widths, title_columns=2),
        title_columns=2,
    )
    return workbook_bytes(workbook)
