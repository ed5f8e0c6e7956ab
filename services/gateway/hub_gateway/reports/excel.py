"""What every workbook of the hub shares: safe cells, money formats, styles, print setup.

Text in a cell comes from tenants (account names, customer names) and from accountants
(client names), so it is cleaned of characters XML cannot hold and always stored as text:
a name starting with "=" never becomes a formula.

A workbook is written in one language (the accountant's: hub_common.i18n): its sheet
names, headings, notes, page footers and date formats. Amount formats need nothing per
language: Excel shows "#,##0.00" with the reader's own separators. The order of day, month
and year is written into a date's format, so that is chosen per language.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from babel.dates import format_date
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.page import PageMargins

from hub_common.i18n import Translator

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

TITLE_FONT = Font(bold=True, size=14)
SUBTITLE_FONT = Font(bold=True, size=11)
NOTE_FONT = Font(italic=True, size=9, color="555555")
BOLD = Font(bold=True)
HEADER_FILL = PatternFill("solid", fgColor="DDE3EA")
_THIN = Side(style="thin")
HEADER_BORDER = Border(bottom=_THIN)
TOTAL_BORDER = Border(top=_THIN)
GRAND_TOTAL_BORDER = Border(top=_THIN, bottom=Side(style="double"))
HEADER_ALIGNMENT = Alignment(wrap_text=True, vertical="bottom")

COUNT_FORMAT = "#,##0"
# Each language's numeric day, as its accountants write it (CLDR's short dates, with the
# full year); English keeps ISO 8601, which no English reader misreads.
_DAY_PATTERNS = {"en": "yyyy-MM-dd", "nl": "dd-MM-yyyy", "de": "dd.MM.yyyy", "fr": "dd/MM/yyyy"}

# Excel keeps at most 32,767 characters in a cell and 255 in a page header or footer.
MAX_CELL_TEXT = 32_767
_NOT_A_CURRENCY_CHARACTER = re.compile(r"[^A-Za-z0-9]")


def day_text(day: date, language: str) -> str:
    """A day in the language's numeric form ("2026-05-19", "19-05-2026", "19.05.2026")."""
    return format_date(day, _DAY_PATTERNS[language], locale=language)


def moment_text(moment: datetime, language: str) -> str:
    """A UTC moment as the day and the time ("19.05.2026 14:05 UTC")."""
    return f"{day_text(moment.date(), language)} {moment:%H:%M} UTC"


def datetime_format(language: str) -> str:
    """Excel's number format for a date and time in the language's order (Excel's "mm"
    is the month next to a day or year, as here)."""
    return f"{_DAY_PATTERNS[language].lower()} hh:mm"


# A translation may hold soft hyphens where a long word (German's "Verbindlichkeiten") may
# break in the dashboard's narrow headings; a cell wraps by itself and would show them.
_SOFT_HYPHEN = "\u00ad"


# What XML 1.0 refuses beyond openpyxl's control characters: the noncharacters U+FFFE and
# U+FFFF (pydantic refuses lone surrogates before). One in a tenant's name would make the
# whole file unreadable.
_NOT_IN_XML = re.compile("[\ufffe\uffff]")


def clean_text(value: str, limit: int = MAX_CELL_TEXT) -> str:
    """Text an xlsx file can hold: no control characters, nor what XML refuses (nor soft
    hyphens), at most ``limit`` characters."""
    cleaned: str = _NOT_IN_XML.sub("", ILLEGAL_CHARACTERS_RE.sub("", value)).replace(_SOFT_HYPHEN, "")
    return cleaned[:limit]


def put_text(sheet: Any, row: int, column: int, value: str | None, *, font: Font | None = None) -> Any:
    """A text cell; stored as text whatever it starts with (never a formula)."""
    cell = sheet.cell(row=row, column=column)
    if value:
        cell.value = clean_text(value)
        cell.data_type = "s"
    if font is not None:
        cell.font = font
    return cell


def put_number(sheet: Any, row: int, column: int, value: Decimal | int | None, number_format: str) -> Any:
    cell = sheet.cell(row=row, column=column)
    if value is not None:
        cell.value = value
    cell.number_format = number_format
    return cell


def currency_code(code: str | None) -> str:
    """A currency code fit to appear in a number format: letters and digits only."""
    return _NOT_A_CURRENCY_CHARACTER.sub("", code or "")[:10].upper()


# BC keeps at most five decimals for an amount (G/L Setup's "Amount Decimal Places").
MOST_AMOUNT_DECIMALS = 5


def shown_decimals(amounts: Iterable[Decimal | None]) -> int:
    """Decimals to show amounts with: as many as BC wrote, at least two; a company that
    keeps three (its currency KWD, BHD or OMR) prints its mils rather than rounded cents."""
    written = [
        -exponent
        for amount in amounts
        if amount is not None and isinstance(exponent := amount.as_tuple().exponent, int)
    ]
    return min(max([2, *written]), MOST_AMOUNT_DECIMALS)


def money_format(code: str | None, decimals: int = 2, *, blank_zero: bool = False) -> str:
    """``decimals`` decimals with thousands separators, followed by the currency code (if
    known). ``blank_zero``: a zero shows nothing, as BC prints its financial reports (a
    heading or a line with no accounts to sum has an amount of 0 in BC's API)."""
    amount = "#,##0." + "0" * decimals
    cleaned = currency_code(code)
    sections = f"{amount};-{amount}" if not cleaned else f'{amount} "{cleaned}";-{amount} "{cleaned}"'
    return f"{sections};;@" if blank_zero else sections


def header_text(value: str, limit: int) -> str:
    """Text for a page header or footer: "&" starts a code there, so it is doubled; cut
    to ``limit`` characters once escaped, never in the middle of an escape."""
    escaped = ""
    for character in clean_text(value).replace("\n", " ").replace("\r", " "):
        piece = "&&" if character == "&" else character
        if len(escaped) + len(piece) > limit:
            break
        escaped += piece
    return escaped


def style_header_row(sheet: Any, row: int, columns: int) -> None:
    for column in range(1, columns + 1):
        cell = sheet.cell(row=row, column=column)
        cell.font = BOLD
        cell.fill = HEADER_FILL
        cell.border = HEADER_BORDER
        cell.alignment = HEADER_ALIGNMENT


# Column widths (Excel's character units) one landscape A4 or Letter page holds at 100 %.
LANDSCAPE_PAGE_WIDTH = 146
# The smallest scale a fitted page is printed at that still reads well.
SMALLEST_READABLE_SCALE = 0.8


def pages_wide(widths: list[float], *, title_columns: int) -> int:
    """How many landscape pages a sheet of these column widths is printed across, the
    first ``title_columns`` repeated on each, so that none prints below a readable scale:
    fitted to one page, 24 columns came out at a third of their size."""
    repeated = sum(widths[:title_columns])
    room = LANDSCAPE_PAGE_WIDTH / SMALLEST_READABLE_SCALE - repeated
    return max(1, math.ceil((sum(widths) - repeated) / room))


def set_widths(sheet: Any, widths: list[float]) -> None:
    for index, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = width


@dataclass(frozen=True)
class PageHeader:
    """The page header's three parts (left, centre, right), as plain text."""

    left: str
    center: str
    right: str


def set_up_printing(
    sheet: Any,
    *,
    last_row: int,
    last_column: int,
    header_row: int,
    landscape: bool,
    page_header: PageHeader,
    t: Translator,
    pages_wide: int = 1,
    title_columns: int = 0,
) -> None:
    """Print area, orientation, ``pages_wide`` pages wide (the first ``title_columns``
    columns on each of them), the column headings on every page, and the company (or
    workbook) and date in the page header."""
    sheet.print_area = f"A1:{get_column_letter(last_column)}{max(last_row, header_row)}"
    sheet.print_title_rows = f"{header_row}:{header_row}"
    if title_columns:
        sheet.print_title_cols = f"A:{get_column_letter(title_columns)}"
    sheet.page_setup.orientation = "landscape" if landscape else "portrait"
    sheet.page_setup.fitToWidth = pages_wide
    sheet.page_setup.fitToHeight = 0  # as many pages down as it takes
    sheet.sheet_properties.pageSetUpPr.fitToPage = True
    sheet.page_margins = PageMargins(left=0.5, right=0.5, top=0.8, bottom=0.8, header=0.3, footer=0.3)
    # 255 characters for the whole header, codes included: 100 + 80 + 40 and the "&L&C&R".
    # An empty part is left unset: openpyxl would write an empty "&C" that reads back wrong.
    for part, text, limit in (
        (sheet.oddHeader.left, page_header.left, 100),
        (sheet.oddHeader.center, page_header.center, 80),
        (sheet.oddHeader.right, page_header.right, 40),
    ):
        escaped = header_text(text, limit)
        if escaped:
            part.text = escaped
    # &P and &N are Excel's codes for the page and the number of pages.
    sheet.oddFooter.center.text = t.gettext("Page %(page)s of %(pages)s", page="&P", pages="&N")


def new_workbook(title: str) -> Workbook:
    workbook = Workbook()
    workbook.remove(workbook.active)
    workbook.properties.title = clean_text(title, 200)
    workbook.properties.creator = "Accountant Hub"
    return workbook


def workbook_bytes(workbook: Workbook) -> bytes:
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
