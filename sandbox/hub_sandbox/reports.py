"""BC's report entities, computed from the book on request like BC's temporary-table pages:
agedAccountsReceivables, agedAccountsPayables, balanceSheets, incomeStatements,
cashFlowStatements, retainedEarningsStatements and trialBalances.

Parameters come from the request's ``$filter`` (BC's pages read them from the filter too):
``agedAsOfDate`` / ``periodLengthFilter`` for the aged reports, ``dateFilter`` for the
statements. The records then carry the values asked for, so the same filter applied to
them afterwards keeps them all.

The sandbox keeps balances, not a dated ledger: statements show the balances as of the
business date whatever ``dateFilter`` asks, and the income statement covers the fiscal
year to the business date. Documented in the README.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

from hub_sandbox.documents import BLANK_GUID, Document, Party
from hub_sandbox.figures import open_purchase_invoices, open_sales_invoices
from hub_sandbox.odata import ODataQueryError, Record
from hub_sandbox.seed import AccountCategory, AccountRole, AccountType, CompanyBook, GLAccount

DEFAULT_PERIOD_LENGTH = "30D"
_PERIOD_LENGTH = re.compile(r"^\s*(\d{1,3})\s*([DWMQY])\s*$", re.IGNORECASE)

# -- aged receivables / payables --------------------------------------------------------


def _shift_back(date: dt.date, count: int, unit: str) -> dt.date:
    """``date`` minus a BC date formula like 30D, 2W, 1M, 1Q or 1Y."""
    if unit == "D":
        return date - dt.timedelta(days=count)
    if unit == "W":
        return date - dt.timedelta(weeks=count)
    months = count * {"M": 1, "Q": 3, "Y": 12}[unit]
    month_index = date.year * 12 + date.month - 1 - months
    year, month = divmod(month_index, 12)
    day = min(date.day, calendar.monthrange(year, month + 1)[1])
    return dt.date(year, month + 1, day)


def parse_period_length(text: str) -> tuple[int, str]:
    match = _PERIOD_LENGTH.match(text)
    if match is None or int(match[1]) == 0:
        raise ODataQueryError(f"The value '{text}' of periodLengthFilter is not a valid date formula.")
    return int(match[1]), match[2].upper()


@dataclass(frozen=True)
class AgingPeriods:
    """Boundaries of the buckets: current = due on or after as-of date; period1 = due in
    [as_of - L, as_of - 1]; period2 = [as_of - 2L, as_of - L - 1]; period3 = older."""

    as_of: dt.date
    period1_start: dt.date
    period2_start: dt.date

    @classmethod
    def of(cls, as_of: dt.date, period_length: str) -> AgingPeriods:
        count, unit = parse_period_length(period_length)
        return cls(as_of, _shift_back(as_of, count, unit), _shift_back(as_of, 2 * count, unit))

    def bucket(self, due: dt.date) -> int:
        if due >= self.as_of:
            return 0
        if due >= self.period1_start:
            return 1
        if due >= self.period2_start:
            return 2
        return 3

    def labels(self) -> tuple[str, str, str]:
        day = dt.timedelta(days=1)
        return (
            f"{self.period1_start.isoformat()}..{(self.as_of - day).isoformat()}",
            f"{self.period2_start.isoformat()}..{(self.period1_start - day).isoformat()}",
            f"..{(self.period2_start - day).isoformat()}",
        )


def _aged(
    documents: Iterable[tuple[Party, Document, Decimal]], periods: AgingPeriods
) -> dict[uuid.UUID, tuple[Party, list[Decimal]]]:
    """What is open now, by due date as seen from the as-of date: BC's aging API has no
    posting-date cut-off (its Graph Mgt - Reports codeunit sums the open entries' detailed
    entries by initial due date), so an invoice posted after the as-of date counts too."""
    rows: dict[uuid.UUID, tuple[Party, list[Decimal]]] = {}
    for party, document, amount in documents:
        _, buckets = rows.setdefault(party.id, (party, [Decimal(0)] * 4))
        buckets[periods.bucket(document.due_date)] += amount
    return rows


def aged_receivables_records(book: CompanyBook, as_of: dt.date, period_length: str) -> list[Record]:
    """One row per customer with open invoices, by customer number, then the Total row."""
    periods = AgingPeriods.of(as_of, period_length)
    rows = _aged(((d.party, d, d.remaining_amount) for d in open_sales_invoices(book)), periods)
    labels = periods.labels()
    lcy = book.ledger_setup.local_currency_code

    def record(party_id: uuid.UUID, number: str, name: str, buckets: list[Decimal]) -> Record:
        return {
            "customerId": party_id, "customerNumber": number, "name": name, "currencyCode": lcy,
            "balanceDue": sum(buckets, Decimal(0)), "currentAmount": buckets[0],
            "period1Label": labels[0], "period1Amount": buckets[1],
            "period2Label": labels[1], "period2Amount": buckets[2],
            "period3Label": labels[2], "period3Amount": buckets[3],
            "agedAsOfDate": as_of, "periodLengthFilter": period_length,
        }  # fmt: skip

    return _with_total(rows, record)


def aged_payables_records(book: CompanyBook, as_of: dt.date, period_length: str) -> list[Record]:
    """Like receivables, from open purchase invoices' totals (positive amounts owed)."""
    periods = AgingPeriods.of(as_of, period_length)
    rows = _aged(((d.party, d, d.amount_including_tax) for d in open_purchase_invoices(book)), periods)

    def record(party_id: uuid.UUID, number: str, name: str, buckets: list[Decimal]) -> Record:
        return {
            "vendorId": party_id, "vendorNumber": number, "name": name,
            # BC writes the vendor's currency here, empty for local currency.
            "currencyCode": "",
            "balanceDue": sum(buckets, Decimal(0)), "currentAmount": buckets[0],
            "period1Amount": buckets[1], "period2Amount": buckets[2], "period3Amount": buckets[3],
            "agedAsOfDate": as_of, "periodLengthFilter": period_length,
        }  # fmt: skip

    return _with_total(rows, record)


def _with_total(
    rows: dict[uuid.UUID, tuple[Party, list[Decimal]]],
    record: Callable[[uuid.UUID, str, str, list[Decimal]], Record],
) -> list[Record]:
    ordered = sorted(rows.values(), key=lambda row: row[0].number)
    records = [record(party.id, party.number, party.display_name, buckets) for party, buckets in ordered]
    totals = [sum((buckets[i] for _, buckets in ordered), Decimal(0)) for i in range(4)]
    records.append(record(BLANK_GUID, "", "Total", totals))
    return records


# -- financial statements ---------------------------------------------------------------


@dataclass(frozen=True)
class StatementLine:
    display: str
    amount: Decimal
    line_type: str  # header, detail, total, spacer
    indentation: int


def _header(text: str) -> StatementLine:
    return StatementLine(text, Decimal(0), "header", 0)


def _detail(text: str, amount: Decimal) -> StatementLine:
    return StatementLine(text, amount, "detail", 1)


def _total(text: str, amount: Decimal) -> StatementLine:
    return StatementLine(text, amount, "total", 0)


_SPACER = StatementLine("", Decimal(0), "spacer", 0)


def _posting(book: CompanyBook) -> list[GLAccount]:
    return [a for a in book.accounts if a.account_type is AccountType.POSTING]


def _by_sub_category(accounts: Iterable[GLAccount], sign: int) -> list[StatementLine]:
    """One detail line per subcategory, in chart order, summing the posting accounts."""
    sums: dict[str, Decimal] = {}
    for account in accounts:
        sums[account.sub_category] = sums.get(account.sub_category, Decimal(0)) + account.net_change
    return [_detail(name, amount * sign) for name, amount in sums.items()]


def net_income(book: CompanyBook) -> Decimal:
    """Income minus costs and expenses of the fiscal year (positive = profit)."""
    return -sum((a.net_change for a in _posting(book) if a.number >= "40000"), Decimal(0))


def _in(book: CompanyBook, category: AccountCategory) -> list[GLAccount]:
    return [a for a in _posting(book) if a.category is category]


def balance_sheet_lines(book: CompanyBook) -> list[StatementLine]:
    """Assets as debits; liabilities and equity with the sign shown opposite, as BC's
    financial report rows do; equity includes the year's net income."""
    assets = _in(book, AccountCategory.ASSETS)
    liabilities = _in(book, AccountCategory.LIABILITIES)
    equity = _in(book, AccountCategory.EQUITY)
    total_assets = sum((a.net_change for a in assets), Decimal(0))
    total_liabilities = -sum((a.net_change for a in liabilities), Decimal(0))
    total_equity = -sum((a.net_change for a in equity), Decimal(0)) + net_income(book)
    return [
        _header("Assets"),
        *_by_sub_category(assets, 1),
        _total("Total Assets", total_assets),
        _SPACER,
        _header("Liabilities"),
        *_by_sub_category(liabilities, -1),
        _total("Total Liabilities", total_liabilities),
        _SPACER,
        _header("Equity"),
        *_by_sub_category(equity, -1),
        _detail("Net Income", net_income(book)),
        _total("Total Equity", total_equity),
        _SPACER,
        _total("Total Liabilities and Equity", total_liabilities + total_equity),
    ]


def income_statement_lines(book: CompanyBook) -> list[StatementLine]:
    income = _in(book, AccountCategory.INCOME)
    costs = _in(book, AccountCategory.COST_OF_GOODS_SOLD)
    expenses = _in(book, AccountCategory.EXPENSE)
    total_income = -sum((a.net_change for a in income), Decimal(0))
    total_costs = sum((a.net_change for a in costs), Decimal(0))
    total_expenses = sum((a.net_change for a in expenses), Decimal(0))
    return [
        _header("Income"),
        *_by_sub_category(income, -1),
        _total("Total Income", total_income),
        _SPACER,
        _header("Cost of Goods Sold"),
        *_by_sub_category(costs, 1),
        _total("Total Cost of Goods Sold", total_costs),
        _total("Gross Profit", total_income - total_costs),
        _SPACER,
        _header("Expenses"),
        *_by_sub_category(expenses, 1),
        _total("Total Expenses", total_expenses),
        _SPACER,
        _total("Net Income", total_income - total_costs - total_expenses),
    ]


_OPERATING = frozenset(
    {AccountRole.RECEIVABLES, AccountRole.INVENTORY, AccountRole.PREPAID_EXPENSES, AccountRole.PAYABLES,
     AccountRole.OUTPUT_TAX, AccountRole.INPUT_TAX, AccountRole.TAX_SETTLEMENT,
     AccountRole.PAYROLL_LIABILITIES}
)  # fmt: skip
_INVESTING = frozenset({AccountRole.EQUIPMENT, AccountRole.ACCUMULATED_DEPRECIATION})
_FINANCING = frozenset({AccountRole.LOANS, AccountRole.SHARE_CAPITAL, AccountRole.RETAINED_EARNINGS})


def cash_flow_statement_lines(book: CompanyBook) -> list[StatementLine]:
    """Indirect method over the life of the books (opening balances zero): each non-cash
    balance-sheet account contributes minus its balance, so the net change in cash equals
    the cash accounts' balance."""
    balance_sheet = [a for a in _posting(book) if a.number < "40000"]

    def section(roles: frozenset[AccountRole]) -> list[StatementLine]:
        sums: dict[str, Decimal] = {}
        for account in balance_sheet:
            if account.role in roles:
                sums[account.display_name] = sums.get(account.display_name, Decimal(0)) - account.net_change
        return [_detail(name, amount) for name, amount in sums.items()]

    operating = [_detail("Net Income", net_income(book)), *section(_OPERATING)]
    investing, financing = section(_INVESTING), section(_FINANCING)
    totals = [sum((line.amount for line in lines), Decimal(0)) for lines in (operating, investing, financing)]
    cash = sum((a.net_change for a in balance_sheet if a.role is AccountRole.CASH), Decimal(0))
    return [
        _header("Operating Activities"),
        *operating,
        _total("Net Cash from Operating Activities", totals[0]),
        _SPACER,
        _header("Investing Activities"),
        *investing,
        _total("Net Cash from Investing Activities", totals[1]),
        _SPACER,
        _header("Financing Activities"),
        *financing,
        _total("Net Cash from Financing Activities", totals[2]),
        _SPACER,
        _total("Net Change in Cash", sum(totals, Decimal(0))),
        _total("Cash at End of Period", cash),
    ]


def retained_earnings_lines(book: CompanyBook) -> list[StatementLine]:
    start = -book.balance_of(AccountRole.RETAINED_EARNINGS)
    income = net_income(book)
    return [
        _detail("Retained Earnings, Period Start", start),
        _detail("Net Income", income),
        _detail("Distributions to Shareholders", Decimal(0)),
        _total("Retained Earnings, Period End", start + income),
    ]


def statement_records(
    book: CompanyBook, name: str, lines: list[StatementLine], amount_field: str, date_filter: dt.date
) -> list[Record]:
    return [
        {
            "id": uuid.uuid5(book.company.id, f"{name}/{number}"),
            "lineNumber": number,
            "display": line.display,
            amount_field: line.amount,
            "lineType": line.line_type,
            "indentation": line.indentation,
            "dateFilter": date_filter,
        }
        for number, line in ((10_000 * (n + 1), line) for n, line in enumerate(lines))
    ]


# -- trial balance ----------------------------------------------------------------------


def format_amount(amount: Decimal) -> str:
    """BC's trial balance money as text, formatted like the en-US client: 72,893.84."""
    return f"{amount:,.2f}"


def trial_balance_records(book: CompanyBook, date_filter: dt.date) -> list[Record]:
    """Every G/L account; debit and credit columns for the period and at the date. BC's
    period pair is the period's debits and credits, each in full; without a dated ledger the
    sandbox posts each account one way, so both pairs show the balance on its side (period =
    all time). Headings stay blank."""
    records: list[Record] = []
    for account in book.accounts:
        if account.account_type is AccountType.HEADING or account.account_type is AccountType.BEGIN_TOTAL:
            debit = credit = ""
        else:
            amount = account.net_change
            debit = format_amount(amount if amount > 0 else Decimal(0))
            credit = format_amount(-amount if amount < 0 else Decimal(0))
        records.append(
            {
                "number": account.number,
                "accountId": account.id,
                "accountType": account.account_type.value,
                "display": account.display_name,
                "totalDebit": debit,
                "totalCredit": credit,
                "balanceAtDateDebit": debit,
                "balanceAtDateCredit": credit,
                "dateFilter": date_filter,
            }
        )
    return records
