"""Excel workbooks, built from typed data with openpyxl; no web framework here.

``company_workbook``: one company's financial statements, one sheet each, ready to print.
``key_figures_workbook``: the key figures of every company of every client of a firm.
"""

from hub_gateway.reports.company import company_workbook
from hub_gateway.reports.excel import XLSX_MEDIA_TYPE
from hub_gateway.reports.filenames import attachment_disposition
from hub_gateway.reports.key_figures import KeyFiguresRow, key_figures_rows, key_figures_workbook

__all__ = [
    "XLSX_MEDIA_TYPE",
    "KeyFiguresRow",
    "attachment_disposition",
    "company_workbook",
    "key_figures_rows",
    "key_figures_workbook",
]
