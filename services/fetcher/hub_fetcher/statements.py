"""Reading a company's financial statements from BC's statement APIs, for the workbooks.

``cmd.fetcher.statements.read`` asks any fetcher (a queue group) for one company's seven
statements as of a date. They are read with one ``$batch``: the balance sheet and the
aged reports need only the date; the period statements (income statement, cash flow,
retained earnings, trial balance) cover the fiscal year to that date, guessed to start
on 1 January. Only when the company's fiscal year starts on another day (BC's
``companyInformation.currentFiscalYearStartDate``, read in the same batch) are the four
period statements read again for the right period: a second round trip, which a
calendar fiscal year never pays.

Everything a tenant answers is validated; a missing or malformed field is a classified
``bad_response`` failure, never a crash.
"""

from __future__ import annotations

import asyncio
import calendar
import datetime as dt
import re
import uuid
from collections.abc import Awaitable, Callable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, BeforeValidator, Field, ValidationError, ValidationInfo

from hub_common import commands
from hub_common.command_handling import answer
from hub_common.commands import CommandRejected, ReadStatements, Rejection, RejectionReason
from hub_common.events import ClientConnection, FailureKind
from hub_common.logging import get_logger
from hub_common.money import MAX_DIGITS, ExactNumber
from hub_common.statements import (
    MAX_INDENTATION,
    MAX_STATEMENT_LINES,
    AgedLine,
    AgedReport,
    CompanyStatements,
    LineType,
    Statement,
    StatementLine,
    TrialBalance,
    TrialBalanceLine,
)
from hub_fetcher.bc.client import BatchRead, BatchRequest, BusinessCentral, Environment
from hub_fetcher.bc.entities import BcDate, Entity, EntityT, parse_entities
from hub_fetcher.bc.failures import FetchFailure

logger = get_logger(__name__)

# Any fetcher process answers; NATS spreads the requests over the group's members.
STATEMENTS_QUEUE = "fetcher-statements"
# Reads one process works on at once; the tenant's shared slots still hold BC's 5.
STATEMENT_READS_AT_ONCE = 4
# Room left in a NATS message for the reply's headers.
REPLY_HEADERS_ROOM_BYTES = 16 * 1024
# BC's default and the periods the workbook's column headings name (1-30 days, ...).
AGING_PERIOD_DAYS = 30
BLANK_GUID = uuid.UUID(int=0)


# ---------------------------------------------------------------- what BC answers


def _text(value: object) -> object:
    """BC writes null for an empty text now and then; the hub reads it as empty."""
    return "" if value is None else value


Text = Annotated[str, BeforeValidator(_text), Field(max_length=500)]
ShortText = Annotated[str, BeforeValidator(_text), Field(max_length=50)]


class _CompanyInformation(Entity):
    currency_code: ShortText = Field(default="", alias="currencyCode")
    current_fiscal_year_start: BcDate = Field(default=None, alias="currentFiscalYearStartDate")


class _LedgerSetup(Entity):
    local_currency_code: ShortText = Field(default="", alias="localCurrencyCode")


class _AccountingPeriod(Entity):
    starting_date: BcDate = Field(default=None, alias="startingDate")


class _ReportRow(Entity):
    """A financial report row; each statement names its amount field differently."""

    line_number: int = Field(alias="lineNumber", ge=0, le=2**31)
    display: Text = ""
    line_type: ShortText = Field(default="detail", alias="lineType")
    indentation: int = Field(default=0, ge=0, le=1000)
    amount: ExactNumber


class _BalanceRow(_ReportRow):
    amount: ExactNumber = Field(alias="balance")


class _NetChangeRow(_ReportRow):
    amount: ExactNumber = Field(alias="netChange")


_SEPARATORS = re.compile(r"[\s\u00a0\u202f'’]")
_DIGITS_AND_MARKS = re.compile(r"[0-9.,]{1,40}")
# Validation context of a trial balance: whether a lone "." or "," before exactly three
# digits is the answer's decimal mark (see ``lone_mark_is_decimal``).
LONE_MARK_IS_DECIMAL = "lone_mark_is_decimal"


def _unsigned(text: str) -> tuple[str, bool]:
    """The amount's digits and marks, and whether it is negative."""
    compact = _SEPARATORS.sub("", text)
    negative = False
    if compact.startswith("(") and compact.endswith(")"):
        negative, compact = True, compact[1:-1]
    if compact.startswith("-"):
        negative, compact = not negative, compact[1:]
    elif compact.endswith("-"):
        negative, compact = not negative, compact[:-1]
    return compact, negative


def _decimals_shown(text: str) -> int | None:
    """How many decimals an amount shows, when the text alone says: "1,234.567" three,
    "0.125" three (a group never starts with 0), "12,50" two, "1,234,567" and "0" none;
    "1,234" could be 1234 or 1.234 (None)."""
    compact, _ = _unsigned(text)
    if not compact or not _DIGITS_AND_MARKS.fullmatch(compact):
        return None
    last_dot, last_comma = compact.rfind("."), compact.rfind(",")
    if last_dot < 0 and last_comma < 0:
        return 0
    mark = "." if last_dot > last_comma else ","
    after = len(compact) - compact.rfind(mark) - 1
    if last_dot >= 0 and last_comma >= 0:
        return after
    if compact.count(mark) > 1:
        return 0
    if after != 3 or compact.split(mark)[0] in ("", "0"):
        return after
    return None


def lone_mark_is_decimal(texts: list[str]) -> bool:
    """Whether the amounts of one answer all show decimals, so that "1,234" among them is
    1.234. BC writes every amount of a trial balance with the company's amount decimal
    places (G/L Setup; 3 for KWD, BHD, OMR, JOD or TND, 2 for most, 0 for some), its zeros
    too ("0.000"): the answer's other amounts say what "1,234" alone cannot."""
    shown = [decimals for decimals in map(_decimals_shown, texts) if decimals is not None]
    return bool(shown) and min(shown) > 0


def parse_formatted_amount(text: str, *, lone_mark_is_decimal: bool = False) -> Decimal | None:
    """An amount BC formatted as text for the user's region ("72,893.84", "72.893,84",
    "72 893,84", "-1,234.50", "(1,234.50)"); blank is None.

    The decimal separator is the last of "." and "," when both appear; a lone separator
    followed by exactly three digits groups thousands ("1,234" is one thousand two hundred
    and thirty-four) unless the answer's amounts all show decimals (``lone_mark_is_decimal``).
    """
    compact, negative = _unsigned(text)
    if not compact:
        return None
    if not _DIGITS_AND_MARKS.fullmatch(compact) or not any(char.isdigit() for char in compact):
        raise ValueError(f"not an amount: {text[:50]!r}")
    last_dot, last_comma = compact.rfind("."), compact.rfind(",")
    if last_dot >= 0 and last_comma >= 0:
        decimal_mark: str | None = "." if last_dot > last_comma else ","
    elif last_dot >= 0 or last_comma >= 0:
        mark = "." if last_dot >= 0 else ","
        digits_after = len(compact) - max(last_dot, last_comma) - 1
        lone = compact.count(mark) == 1
        decimal_mark = mark if lone and (digits_after != 3 or lone_mark_is_decimal) else None
    else:
        decimal_mark = None
    grouping = {".", ","} - {decimal_mark}
    for mark in grouping:
        compact = compact.replace(mark, "")
    if decimal_mark is not None:
        if compact.count(decimal_mark) != 1:
            raise ValueError(f"not an amount: {text[:50]!r}")
        compact = compact.replace(decimal_mark, ".")
    try:
        amount = Decimal(compact)
    except InvalidOperation as error:
        raise ValueError(f"not an amount: {text[:50]!r}") from error
    return -amount if negative else amount


def _formatted_amount(value: object, info: ValidationInfo) -> Decimal | None:
    """Trial balance money: text as BC documents it, or a number should a version send one."""
    if value is None:
        return None
    amount: Decimal | None = None
    if isinstance(value, str):
        context = info.context or {}
        amount = parse_formatted_amount(value, lone_mark_is_decimal=bool(context.get(LONE_MARK_IS_DECIMAL)))
        if amount is None:
            return None
    # The client parses JSON numbers with a fraction as Decimal, whole ones as int.
    elif isinstance(value, Decimal | int | float) and not isinstance(value, bool):
        amount = Decimal(str(value))
    # Kept as BC wrote it (a company may keep three decimals), so bounded like any amount.
    if amount is not None and amount.is_finite() and len(amount.as_tuple().digits) <= MAX_DIGITS:
        return amount
    raise ValueError("not an amount")


FormattedAmount = Annotated[Decimal | None, BeforeValidator(_formatted_amount)]


class _TrialBalanceRow(Entity):
    number: ShortText
    display: Text = ""
    account_type: ShortText = Field(default="", alias="accountType")
    total_debit: FormattedAmount = Field(default=None, alias="totalDebit")
    total_credit: FormattedAmount = Field(default=None, alias="totalCredit")
    balance_debit: FormattedAmount = Field(default=None, alias="balanceAtDateDebit")
    balance_credit: FormattedAmount = Field(default=None, alias="balanceAtDateCredit")


class _AgedRow(Entity):
    party_id: uuid.UUID | None = Field(default=None, validation_alias=AliasChoices("customerId", "vendorId"))
    number: ShortText = Field(default="", validation_alias=AliasChoices("customerNumber", "vendorNumber"))
    name: Text = ""
    currency_code: ShortText = Field(default="", alias="currencyCode")
    balance_due: ExactNumber = Field(alias="balanceDue")
    current_amount: ExactNumber = Field(alias="currentAmount")
    period1_amount: ExactNumber = Field(alias="period1Amount")
    period2_amount: ExactNumber = Field(alias="period2Amount")
    period3_amount: ExactNumber = Field(alias="period3Amount")


# ---------------------------------------------------------------- rules


_ODATA_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def decode_enum(value: str) -> str:
    """BC's enum value as its caption: ``Begin_x002D_Total`` is ``Begin-Total``."""
    return _ODATA_ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), value)


def _shift_years(day: dt.date, years: int) -> dt.date:
    year = day.year + years
    return day.replace(year=year, day=min(day.day, calendar.monthrange(year, day.month)[1]))


# A period is a month at most in practice ("Create Fiscal Year" makes months, or 4-4-5
# weeks): a date within this of the last period's start lies in the periods set up.
_LONGEST_PERIOD = dt.timedelta(days=31)


def fiscal_year_start(
    as_of: dt.date, *, last_opened: dt.date | None, last_period: dt.date | None, current_start: dt.date
) -> dt.date:
    """The start of the fiscal year holding ``as_of``.

    ``last_opened`` is the start of the last accounting period on or before ``as_of`` that
    opens a fiscal year (BC's "New Fiscal Year"): within the periods the company has set up
    (``last_period`` is the start of its last one), that is the year, however long it is (a
    changed year end, a short first year, 53-week years). Past them, years of twelve months
    are counted on from it; for a company with no periods, from ``current_start``
    (companyInformation's current fiscal year, which BC takes from the last period opening
    a year, so possibly one set up ahead of ``as_of``)."""
    if last_opened is not None:
        start = last_opened
        if last_period is not None and as_of < last_period + _LONGEST_PERIOD:
            return start
        while (following := _shift_years(start, 1)) <= as_of:
            start = following
        return start
    start = _shift_years(current_start, as_of.year - current_start.year)
    if start > as_of:
        start = _shift_years(start, -1)
    return start


def _company(company_id: uuid.UUID) -> str:
    return f"companies({company_id})"


def _statement_request(
    key: str, company_id: uuid.UUID, entity_set: str, amount: str, date_filter: str, page_size: int | None
) -> BatchRequest:
    # Optional: BC computes each from the financial report General Ledger Setup names for
    # it, and fails that one read where the report is blank or gone (companies migrated
    # from NAV often lack the cash flow and retained earnings ones); the rest still prints.
    return BatchRequest(
        key,
        f"{_company(company_id)}/{entity_set}?$filter={date_filter}"
        f"&$select=lineNumber,display,{amount},lineType,indentation&$orderby=lineNumber",
        page_size,
        optional=True,
    )


def period_requests(
    company_id: uuid.UUID, start: dt.date, end: dt.date, page_size: int | None = None
) -> list[BatchRequest]:
    """The statements over a period: BC reads the period from a dateFilter range."""
    period = f"dateFilter ge {start.isoformat()} and dateFilter le {end.isoformat()}"
    return [
        _statement_request("income_statement", company_id, "incomeStatements", "netChange", period, page_size),
        _statement_request("cash_flow_statement", company_id, "cashFlowStatements", "netChange", period, page_size),
        _statement_request(
            "retained_earnings", company_id, "retainedEarningsStatements", "netChange", period, page_size
        ),
        BatchRequest(
            "trial_balance",
            f"{_company(company_id)}/trialBalances?$filter={period}"
            "&$select=number,accountType,display,totalDebit,totalCredit,balanceAtDateDebit,balanceAtDateCredit",
            page_size,
        ),
    ]


def statement_requests(
    company_id: uuid.UUID, as_of: dt.date, period_start: dt.date, page_size: int | None = None
) -> list[BatchRequest]:
    """Every read of one workbook, each with only the fields it needs."""
    aged = f"agedAsOfDate eq {as_of.isoformat()} and periodLengthFilter eq '{AGING_PERIOD_DAYS}D'"
    amounts = "balanceDue,currentAmount,period1Amount,period2Amount,period3Amount"
    return [
        BatchRequest(
            "information", f"{_company(company_id)}/companyInformation?$select=currencyCode,currentFiscalYearStartDate"
        ),
        BatchRequest("setup", f"{_company(company_id)}/generalLedgerSetup?$select=localCurrencyCode"),
        # Optional: without it (a tenant that refuses the page), the year is counted from
        # companyInformation's current fiscal year start.
        BatchRequest(
            "fiscal_year",
            f"{_company(company_id)}/accountingPeriods?$filter=newFiscalYear eq true and startingDate le "
            f"{as_of.isoformat()}&$orderby=startingDate desc&$top=1&$select=startingDate",
            optional=True,
        ),
        # The last period set up: a date past it is in years the company has not made yet.
        BatchRequest(
            "last_period",
            f"{_company(company_id)}/accountingPeriods?$orderby=startingDate desc&$top=1&$select=startingDate",
            optional=True,
        ),
        _statement_request(
            "balance_sheet", company_id, "balanceSheets", "balance", f"dateFilter eq {as_of.isoformat()}", page_size
        ),
        *period_requests(company_id, period_start, as_of, page_size),
        BatchRequest(
            "aged_receivables",
            f"{_company(company_id)}/agedAccountsReceivables?$filter={aged}"
            f"&$select=customerId,customerNumber,name,currencyCode,{amounts}",
            page_size,
        ),
        BatchRequest(
            "aged_payables",
            f"{_company(company_id)}/agedAccountsPayables?$filter={aged}"
            f"&$select=vendorId,vendorNumber,name,currencyCode,{amounts}",
            page_size,
        ),
    ]


def _bounded(items: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
    if len(items) > MAX_STATEMENT_LINES:
        raise FetchFailure(
            FailureKind.BAD_RESPONSE, message=f"{what}: {len(items)} lines, more than {MAX_STATEMENT_LINES}"
        )
    return items


def _line_type(value: str) -> LineType:
    """BC's lineType; an unknown one prints as a plain detail line rather than failing."""
    lowered = value.strip().casefold()
    if lowered == "header":
        return "header"
    if lowered == "total":
        return "total"
    if lowered == "spacer":
        return "spacer"
    return "detail"


def _statement(
    read: BatchRead, key: str, model: type[_ReportRow], what: str, start: dt.date | None, end: dt.date
) -> Statement:
    failure = read.failures.get(key)
    if failure is not None:
        if failure.http_status is None or failure.http_status < 400:
            # Not BC saying it could not, but an answer the hub refuses (a next link to
            # another host, say): that fails the read, as it would any other.
            raise failure
        return Statement(
            period_start=start,
            period_end=end,
            lines=[],
            unavailable=(failure.message or failure.kind.value)[:2000],
        )
    rows = read.collections[key]
    parsed = sorted(parse_entities(model, _bounded(rows, what), what), key=lambda row: row.line_number)
    return Statement(
        period_start=start,
        period_end=end,
        lines=[
            StatementLine(
                line_number=row.line_number,
                description=row.display,
                amount=_as_written(row.amount),
                line_type=_line_type(row.line_type),
                indentation=min(row.indentation, MAX_INDENTATION),
            )
            for row in parsed
        ],
    )


_CENT = Decimal("0.01")
# BC keeps at most five decimals for an amount (G/L Setup's "Amount Decimal Places").
_MOST_DECIMALS = Decimal("0.00001")


def _as_written(amount: Decimal) -> Decimal:
    """An amount as BC writes it: the company's own decimals (three for KWD) are kept, at
    least two, at most five; a float's noise ("0.30000000000000004") is not. An amount too
    large to hold raises decimal.InvalidOperation (a bad response, ``read``)."""
    written = amount.quantize(_MOST_DECIMALS, rounding=ROUND_HALF_UP)
    for places in (_CENT, Decimal("0.001"), Decimal("0.0001")):
        if written == written.quantize(places):
            return written.quantize(places)
    return written


def _written(amount: Decimal | None) -> Decimal | None:
    return None if amount is None else _as_written(amount)


_TRIAL_BALANCE_AMOUNTS = ("totalDebit", "totalCredit", "balanceAtDateDebit", "balanceAtDateCredit")


def _trial_balance(rows: list[dict[str, Any]], start: dt.date, end: dt.date) -> TrialBalance:
    bounded = _bounded(rows, "trialBalances")
    texts = [row[name] for row in bounded for name in _TRIAL_BALANCE_AMOUNTS if isinstance(row.get(name), str)]
    context = {LONE_MARK_IS_DECIMAL: lone_mark_is_decimal(texts)}
    parsed = parse_entities(_TrialBalanceRow, bounded, "trialBalances", context=context)
    return TrialBalance(
        period_start=start,
        period_end=end,
        lines=[
            TrialBalanceLine(
                number=row.number[:20],
                name=row.display,
                account_type=decode_enum(row.account_type)[:30],
                net_change_debit=_written(row.total_debit),
                net_change_credit=_written(row.total_credit),
                balance_debit=_written(row.balance_debit),
                balance_credit=_written(row.balance_credit),
            )
            for row in parsed
        ],
    )


_AGED_AMOUNTS = ("balanceDue", "currentAmount", "period1Amount", "period2Amount", "period3Amount")


def _aged(rows: list[dict[str, Any]], what: str, as_of: dt.date) -> AgedReport:
    """BC answers a row for every customer or vendor, settled ones too (all zero), and its
    own "Total" under the empty GUID, which the workbook sums itself. Only rows with an
    amount are read, and only they count towards the line limit: a shop with 25,000
    customers, most of them settled, still gets its report. (A row whose amounts are
    missing or not numbers is read, and refused as a bad response.)"""
    with_amounts = [row for row in rows if any(row.get(name) != 0 for name in _AGED_AMOUNTS)]
    parsed = parse_entities(_AgedRow, _bounded(with_amounts, what), what)
    open_parties = [row for row in parsed if row.party_id != BLANK_GUID]
    return AgedReport(
        as_of=as_of,
        period_days=AGING_PERIOD_DAYS,
        lines=[
            AgedLine(
                number=row.number[:20],
                name=row.name,
                currency_code=row.currency_code[:10],
                current=_as_written(row.current_amount),
                period1=_as_written(row.period1_amount),
                period2=_as_written(row.period2_amount),
                period3=_as_written(row.period3_amount),
                balance_due=_as_written(row.balance_due),
            )
            for row in open_parties
        ],
    )


def _first(model: type[EntityT], rows: list[dict[str, Any]], what: str) -> EntityT:
    if not rows:
        raise FetchFailure(FailureKind.BAD_RESPONSE, message=f"{what}: no record")
    return parse_entities(model, rows[:1], what)[0]


class StatementsReader:
    def __init__(self, bc: BusinessCentral, *, deadline_seconds: float = 60.0, page_size: int | None = None) -> None:
        self._bc = bc
        self._deadline_seconds = deadline_seconds
        # Only tests make pages small, to see next links followed against the sandbox.
        self._page_size = page_size

    async def read(self, connection: ClientConnection, company_id: uuid.UUID, *, as_of: dt.date) -> CompanyStatements:
        """The company's statements, read within the deadline (a timeout failure after it)."""
        try:
            async with asyncio.timeout(self._deadline_seconds):
                return await self._read(connection, company_id, as_of=as_of)
        except TimeoutError as error:
            raise FetchFailure(
                FailureKind.TIMEOUT,
                message=f"the statements were not read within {self._deadline_seconds:g} s "
                "(HUB_STATEMENTS_DEADLINE_SECONDS)",
            ) from error
        except ArithmeticError as error:
            # An amount too large to hold to its decimals (decimal.InvalidOperation): no statement BC keeps.
            raise FetchFailure(
                FailureKind.BAD_RESPONSE, message=f"statements: an amount out of range ({type(error).__name__})"
            ) from error

    async def _read(self, connection: ClientConnection, company_id: uuid.UUID, *, as_of: dt.date) -> CompanyStatements:
        environment = Environment(tenant=connection.read_tenant, name=connection.environment)
        calendar_year = as_of.replace(month=1, day=1)
        read = await self._bc.read_batch(
            environment, statement_requests(company_id, as_of, calendar_year, self._page_size)
        )
        collections = read.collections
        information = _first(_CompanyInformation, collections["information"], "companyInformation")
        setup = _first(_LedgerSetup, collections["setup"], "generalLedgerSetup")
        opened, last = collections.get("fiscal_year"), collections.get("last_period")
        period_start = fiscal_year_start(
            as_of,
            last_opened=_first(_AccountingPeriod, opened, "accountingPeriods").starting_date if opened else None,
            last_period=_first(_AccountingPeriod, last, "accountingPeriods").starting_date if last else None,
            current_start=information.current_fiscal_year_start or calendar_year,
        )
        if period_start != calendar_year:
            # The period's statements again, over the fiscal year: this read's outcome replaces
            # the calendar year's, failures included.
            period = await self._bc.read_batch(
                environment, period_requests(company_id, period_start, as_of, self._page_size)
            )
            for request in period_requests(company_id, period_start, as_of):
                read.failures.pop(request.id, None)
            read.collections.update(period.collections)
            read.failures.update(period.failures)
        read_at = dt.datetime.now(dt.UTC)
        return CompanyStatements(
            company_id=company_id,
            currency_code=(setup.local_currency_code or information.currency_code)[:10],
            as_of=as_of,
            fiscal_year_start=period_start,
            read_at=read_at,
            balance_sheet=_statement(read, "balance_sheet", _BalanceRow, "balanceSheets", None, as_of),
            income_statement=_statement(
                read, "income_statement", _NetChangeRow, "incomeStatements", period_start, as_of
            ),
            cash_flow_statement=_statement(
                read, "cash_flow_statement", _NetChangeRow, "cashFlowStatements", period_start, as_of
            ),
            retained_earnings=_statement(
                read, "retained_earnings", _NetChangeRow, "retainedEarningsStatements", period_start, as_of
            ),
            trial_balance=_trial_balance(collections["trial_balance"], period_start, as_of),
            aged_receivables=_aged(collections["aged_receivables"], "agedAccountsReceivables", as_of),
            aged_payables=_aged(collections["aged_payables"], "agedAccountsPayables", as_of),
        )


# ---------------------------------------------------------------- the command


def rejection_for(failure: FetchFailure) -> Rejection:
    """A BC failure as the command's refusal: plain words, the fix and the details."""
    details = failure.to_failure()
    if failure.kind is FailureKind.ACCESS_NOT_GRANTED:
        reason = RejectionReason.FORBIDDEN
    else:
        reason = RejectionReason.UNAVAILABLE if failure.transient else RejectionReason.UPSTREAM
    return Rejection(
        reason=reason,
        message=details.summary,
        failure=details,
    )


# Whether the firm may read the connection's tenant (hub_common.grants in the fetcher).
MayRead = Callable[[uuid.UUID, ClientConnection], Awaitable[bool]]


async def answer_read_statements(
    reader: StatementsReader, body: bytes, *, max_payload: int, may_read: MayRead
) -> bytes:
    """The reply to one ``ReadStatements``: the statements, or why they could not be read.

    ``max_payload`` is what the broker carries in one message, headers included: a reply
    that does not fit, even compressed, is refused here rather than lost on the way (the
    gateway would only see no answer).
    """
    max_reply_bytes = max_payload - REPLY_HEADERS_ROOM_BYTES

    async def read(command: ReadStatements) -> CompanyStatements:
        try:
            if not await may_read(command.firm_id, command.connection):
                raise FetchFailure(
                    FailureKind.ACCESS_NOT_GRANTED, message="the client's tenant has not granted this firm access"
                )
            return await reader.read(command.connection, command.company_id, as_of=command.as_of)
        except FetchFailure as failure:
            raise _not_read(failure) from failure
        except ValidationError as error:
            # BC's values passed their own checks but not the reply's bounds (a text too long).
            unfit = FetchFailure(FailureKind.BAD_RESPONSE, message=f"statements: {error.errors()[0]['msg']}")
            raise _not_read(unfit) from error

    def fitting_reply(statements: BaseModel) -> bytes:
        reply = commands.encode_result(statements, compress=True)
        if len(reply) > max_reply_bytes:
            raise _not_read(
                FetchFailure(
                    FailureKind.BAD_RESPONSE,
                    message=f"the statements take {len(reply)} bytes compressed, "
                    f"more than the {max_reply_bytes} bytes the broker carries in one message",
                )
            )
        logger.info("statements read", bytes=len(reply))
        return reply

    return await answer(
        body,
        ReadStatements,
        read,
        subject=commands.READ_STATEMENTS,
        owner="fetcher",
        encode=fitting_reply,
        log_context=lambda command: {"company_id": str(command.company_id)},
    )


def _not_read(failure: FetchFailure) -> CommandRejected:
    logger.info("statements not read", kind=failure.kind.value, http_status=failure.http_status)
    return CommandRejected(rejection_for(failure))
