"""The dashboard's rows: filters, sorting, paging, state counts, and the figures' ages."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from decimal import Context, Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, and_, case, func, null, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import KeyedColumnElement
from sqlmodel import col, select

from hub_common.events import ONE_LINE
from hub_common.money import ExactNumber
from hub_common.text_search import fold, folded
from hub_gateway.clients.queries import parsed_json
from hub_gateway.dashboard.currency import CompanyCurrency, ConvertedAmount, RateInEffect, converted_amount
from hub_gateway.dashboard.health import Health, HealthInputs, HealthWeights, assess
from hub_gateway.readmodel.columns import FIGURE_COLUMNS, FIGURES_BY_KEY, ColumnKind
from hub_gateway.readmodel.models import (
    ClientRow,
    CompanyRateRow,
    CompanyRow,
    client_shown,
)
from hub_gateway.readmodel.state import RowState

CENT = Decimal("0.01")


WIDE = Context(prec=60)


TEXT_SORT_KEYS = ("client_name", "company_name", "state", "as_of")


# The states the summary counts as "need attention" (dashboard.js adds them up the same way).
ATTENTION_STATES = ("failed", "waiting")


SORT_KEYS = (*TEXT_SORT_KEYS, *FIGURES_BY_KEY)


MAX_PAGE_SIZE = 1000


class Comparison(StrEnum):
    GT = "gt"
    GE = "ge"
    LT = "lt"
    LE = "le"
    EQ = "eq"
    NE = "ne"


class Threshold(BaseModel):
    """A figure column compared with a number: ``cash lt 10000``."""

    column: Literal[tuple(FIGURES_BY_KEY)]  # type: ignore[valid-type]
    comparison: Comparison
    value: Annotated[ExactNumber, Field(decimal_places=2)]


class DashboardQuery(BaseModel):
    """Which rows, in which order, which page. Every field is optional."""

    text: Annotated[str, Field(max_length=200), ONE_LINE] | None = None
    client_id: uuid.UUID | None = None
    assigned_accountant_id: uuid.UUID | None = None
    has_errors: bool = False
    # Failed or waiting to retry: the rows the summary's "need attention" counts.
    needs_attention: bool = False
    overdue: bool = False
    thresholds: Annotated[list[Threshold], Field(max_length=20)] = []
    sort: Literal[SORT_KEYS] = "client_name"  # type: ignore[valid-type]
    descending: bool = False
    offset: Annotated[int, Field(ge=0, le=10_000_000)] = 0
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)] = 200


class FailureSummary(BaseModel):
    kind: str
    summary: str
    fix: str
    occurred_at: datetime | None = None


DEFAULT_WEIGHTS = HealthWeights()


class PageRow(BaseModel):
    """One dashboard row: a company of a client (or a client whose companies are unknown)."""

    client_id: uuid.UUID
    client_name: str
    company_id: uuid.UUID | None
    company_name: str | None
    state: str
    as_of: datetime | None
    currency_code: str | None
    web_client_link: str | None
    # Every figure column by key: amounts as decimal strings, counts as integers.
    values: dict[str, str | int | None]
    # The last failure; while the state is "waiting", the transient one a retry follows.
    failure: FailureSummary | None
    # While the state is "waiting": when the fetcher tries again.
    next_attempt_at: datetime | None = None
    # The company's health at a glance (dashboard/health.py says how it is weighed).
    health: Health = Health(score=None, level="unknown", reasons=[])
    # With a reporting currency: each amount of ``values`` in it (or why it cannot be).
    amounts: dict[str, ConvertedAmount] | None = None


class StateCounts(BaseModel):
    queued: int = 0
    refreshing: int = 0
    waiting: int = 0
    ok: int = 0
    failed: int = 0


class AmountTotal(BaseModel):
    """An amount column added up over the filtered rows, in the reporting currency."""

    key: str
    currency: str
    total: str
    # Rows whose amount is in the total, and rows with an amount that could not be converted.
    converted: int
    not_converted: int


# The totals the summary shows when amounts are in one reporting currency.
TOTALLED_IN_SUMMARY = ("overdue_sales_invoices_amount", "overdue_purchase_invoices_amount")


class DashboardPage(BaseModel):
    rows: list[PageRow]
    total: int
    offset: int
    limit: int
    # Over the firm's whole dashboard, whatever the filters.
    states: StateCounts
    # The accountant's reporting currency (None: each company's own) and, with one, the
    # summary's totals over the filtered rows.
    reporting_currency: str | None = None
    totals: list[AmountTotal] = []


def _row_state() -> ColumnElement[str]:
    return func.coalesce(col(CompanyRow.state), col(ClientRow.state))


# Sorting by state puts what needs the accountant first: a failure, then a wait for a retry
# (both "need attention"), then reads on their way, then rows that are fine.
STATE_URGENCY = (RowState.FAILED, RowState.WAITING, RowState.REFRESHING, RowState.QUEUED, RowState.OK)


def _state_urgency() -> ColumnElement[int]:
    return case(*((_row_state() == state, rank) for rank, state in enumerate(STATE_URGENCY)), else_=len(STATE_URGENCY))


def shown_company_name(company: CompanyRow) -> str:
    """The company's name as the dashboard shows it: its display name in BC, else its name."""
    return company.display_name or company.company_name


def _shown_company_name() -> ColumnElement[str]:
    """``shown_company_name`` in SQL, lower case: what sorting by company sorts by (an empty
    display name falls back to the name, as ``or`` does in Python)."""
    return func.lower(func.coalesce(func.nullif(col(CompanyRow.display_name), ""), col(CompanyRow.company_name)))


def _escaped_like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _figure(key: str) -> KeyedColumnElement[Any]:
    column: KeyedColumnElement[Any] = getattr(CompanyRow, FIGURES_BY_KEY[key].attribute)
    return column


def _shown(key: str, reporting_currency: str | None) -> ColumnElement[Any]:
    """A figure as the rows show it: an amount in the reporting currency when there is one
    (NULL when the company's BC has no usable rate for it), else as stored. The rule of
    ``dashboard/currency.py``, in SQL, so sorting, thresholds and paging stay in the database."""
    figure = _figure(key)
    if reporting_currency is None or FIGURES_BY_KEY[key].kind is not ColumnKind.AMOUNT:
        return figure
    lcy_per_unit = col(CompanyRateRow.lcy_per_unit)
    currency = func.coalesce(col(CompanyRow.currency_code), "")
    return case(
        # A company whose BC does not say its local currency (a blank LCY Code) may keep
        # rates, but nothing says what its amounts are in: never converted, as in Python.
        (currency == "", None),
        (currency == reporting_currency, figure),
        # To the cent, as the rows show it, so a threshold agrees with the amount on screen.
        (lcy_per_unit > 0, func.round(figure / lcy_per_unit, 2)),
        else_=None,
    )


def _with_rates(statement: Any, reporting_currency: str | None) -> Any:
    """Joins each company's rate for the reporting currency (nothing without one)."""
    if reporting_currency is None:
        return statement
    rate_of_company = and_(
        col(CompanyRateRow.client_id) == col(CompanyRow.client_id),
        col(CompanyRateRow.company_id) == col(CompanyRow.company_id),
        col(CompanyRateRow.currency_code) == reporting_currency,
    )
    return statement.outerjoin(CompanyRateRow, rate_of_company)


def _conditions(
    query: DashboardQuery, firm_id: uuid.UUID, reporting_currency: str | None = None
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [col(ClientRow.firm_id) == firm_id, client_shown()]
    if query.text:
        # Accents and case aside: "muhl" finds Mühlbach, "LODZ" finds Łódź.
        pattern = _escaped_like(fold(query.text.strip()))
        conditions.append(
            or_(
                folded(col(ClientRow.name)).like(pattern, escape="\\"),
                folded(col(CompanyRow.company_name)).like(pattern, escape="\\"),
                folded(col(CompanyRow.display_name)).like(pattern, escape="\\"),
            )
        )
    if query.client_id is not None:
        conditions.append(col(ClientRow.client_id) == query.client_id)
    if query.assigned_accountant_id is not None:
        conditions.append(col(ClientRow.assigned_accountant_id) == query.assigned_accountant_id)
    if query.has_errors:
        conditions.append(_row_state() == "failed")
    if query.needs_attention:
        conditions.append(_row_state().in_(ATTENTION_STATES))
    if query.overdue:
        # By the amounts the columns show as well as the counts: with BC's own cue totals the
        # amount comes from ledger entries (an opening balance posted by journal, say) that
        # no open invoice stands for, so the count may be 0 while the amount is not. A
        # negative amount (credits past due) is nothing overdue. An unknown figure (NULL)
        # matches neither comparison.
        conditions.append(
            or_(
                col(CompanyRow.figure_overdue_sales_invoices_count) > 0,
                col(CompanyRow.figure_overdue_sales_invoices_amount) > 0,
                col(CompanyRow.figure_overdue_purchase_invoices_count) > 0,
                col(CompanyRow.figure_overdue_purchase_invoices_amount) > 0,
            )
        )
    for threshold in query.thresholds:
        # An amount that cannot be converted is NULL here, so it matches no threshold.
        figure = _shown(threshold.column, reporting_currency)
        value = threshold.value
        conditions.append(
            {
                Comparison.GT: figure > value,
                Comparison.GE: figure >= value,
                Comparison.LT: figure < value,
                Comparison.LE: figure <= value,
                Comparison.EQ: figure == value,
                Comparison.NE: figure != value,
            }[threshold.comparison]
        )
    return conditions


def _order(query: DashboardQuery, reporting_currency: str | None = None) -> list[Any]:
    sort_column: Any
    if query.sort == "client_name":
        sort_column = func.lower(col(ClientRow.name))
    elif query.sort == "company_name":
        # By the name the rows show: BC's company name may be a short code under it.
        sort_column = _shown_company_name()
    elif query.sort == "state":
        sort_column = _state_urgency()
    elif query.sort == "as_of":
        sort_column = col(CompanyRow.as_of)
    else:
        sort_column = _shown(query.sort, reporting_currency)
    # Rows without the figure (or whose amount cannot be converted) go last whichever way
    # the column sorts (portable NULLS LAST).
    missing_last = case((sort_column.is_(None), 1), else_=0)
    direction = sort_column.desc() if query.descending else sort_column.asc()
    # Ties broken by name and id, so pages never repeat or skip a row.
    return [
        missing_last,
        direction,
        func.lower(col(ClientRow.name)),
        col(ClientRow.client_id),
        _shown_company_name(),
        col(CompanyRow.company_id),
    ]


def _value(value: Any) -> str | int | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        # Enough precision for any Money (28 digits) to the cent: the default context has 28.
        return format(value.quantize(CENT, context=WIDE), "f")
    return int(value)


def _failure_summary(failure_json: str | None) -> FailureSummary | None:
    failure = parsed_json(failure_json)
    if failure is None:
        return None
    return FailureSummary(
        kind=str(failure.get("kind", "")),
        summary=str(failure.get("summary", "")),
        fix=str(failure.get("fix", "")),
        occurred_at=failure.get("occurred_at"),
    )


def _closing_balances(figures_json: str | None) -> tuple[Decimal, ...]:
    figures = parsed_json(figures_json) or {}
    forecast = figures.get("cash_flow_forecast") or {}
    try:
        return tuple(Decimal(str(week["closing_balance"])) for week in forecast.get("weeks") or ())
    except (KeyError, TypeError, ArithmeticError):
        return ()


def _amount(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _health(company: CompanyRow, weights: HealthWeights) -> Health:
    inputs = HealthInputs(
        state=company.state,
        as_of=company.as_of,
        cash=_amount(company.figure_cash),
        overdue_sales=_amount(company.figure_overdue_sales_invoices_amount),
        overdue_purchases=_amount(company.figure_overdue_purchase_invoices_amount),
        closing_balances=_closing_balances(company.figures_json),
    )
    return assess(inputs, datetime.now(UTC), weights)


def _amounts(company: CompanyRow, rate: CompanyRateRow | None, reporting_currency: str) -> dict[str, ConvertedAmount]:
    currency = CompanyCurrency(
        local_currency=company.currency_code,
        rates_read=company.exchange_rates_read,
        rates_unavailable=company.exchange_rates_unavailable,
        rate=RateInEffect(rate.lcy_per_unit, rate.starting_date) if rate is not None else None,
    )
    amounts: dict[str, ConvertedAmount] = {}
    for column in FIGURE_COLUMNS:
        value = getattr(company, column.attribute)
        if column.kind is ColumnKind.AMOUNT and value is not None:
            amounts[column.key] = converted_amount(Decimal(value), currency, reporting_currency)
    return amounts


def _page_row(
    client: ClientRow,
    company: CompanyRow | None,
    weights: HealthWeights,
    rate: CompanyRateRow | None = None,
    reporting_currency: str | None = None,
) -> PageRow:
    if company is None:
        return PageRow(
            client_id=client.client_id,
            client_name=client.name,
            company_id=None,
            company_name=None,
            state=client.state,
            as_of=None,
            currency_code=None,
            web_client_link=None,
            values={column.key: None for column in FIGURE_COLUMNS},
            failure=_failure_summary(client.failure_json),
            next_attempt_at=client.next_attempt_at,
        )
    return PageRow(
        client_id=client.client_id,
        client_name=client.name,
        company_id=company.company_id,
        company_name=shown_company_name(company),
        state=company.state,
        as_of=company.as_of,
        currency_code=company.currency_code,
        web_client_link=company.web_client_link,
        values={column.key: _value(getattr(company, column.attribute)) for column in FIGURE_COLUMNS},
        failure=_failure_summary(company.failure_json),
        next_attempt_at=company.next_attempt_at,
        health=_health(company, weights),
        amounts=_amounts(company, rate, reporting_currency) if reporting_currency else None,
    )


def _companies_of_client() -> ColumnElement[bool]:
    return and_(col(CompanyRow.client_id) == ClientRow.client_id, col(CompanyRow.firm_id) == ClientRow.firm_id)


def _joined(reporting_currency: str | None = None) -> Any:
    """Clients, their companies and, with a reporting currency, each company's rate for it
    (rows of three either way: without one, the third is None)."""
    rate: Any = CompanyRateRow if reporting_currency is not None else null()
    joined = select(ClientRow, CompanyRow, rate).outerjoin(CompanyRow, _companies_of_client())
    return _with_rates(joined, reporting_currency)


async def state_counts(session: AsyncSession, *, firm_id: uuid.UUID) -> StateCounts:
    state = _row_state().label("state")
    counted = (
        select(state, func.count())
        .select_from(ClientRow)
        .outerjoin(CompanyRow, _companies_of_client())
        .where(col(ClientRow.firm_id) == firm_id, client_shown())
        .group_by(state)
    )
    counts = StateCounts()
    for name, count in (await session.execute(counted)).all():
        if name in StateCounts.model_fields:
            setattr(counts, name, count)
    return counts


async def _totals(
    session: AsyncSession, conditions: list[ColumnElement[bool]], reporting_currency: str
) -> list[AmountTotal]:
    """The summary's amounts over the filtered rows, in the reporting currency: never a sum
    of different currencies; rows that cannot be converted are counted, not added."""
    aggregates: list[Any] = []
    for key in TOTALLED_IN_SUMMARY:
        shown = _shown(key, reporting_currency)
        aggregates += [
            func.sum(shown),
            func.count(shown),
            func.sum(case((and_(_figure(key).is_not(None), shown.is_(None)), 1), else_=0)),
        ]
    joined = select(*aggregates).select_from(ClientRow).outerjoin(CompanyRow, _companies_of_client())
    statement = _with_rates(joined, reporting_currency).where(*conditions)
    values = (await session.execute(statement)).one()
    return [
        AmountTotal(
            key=key,
            currency=reporting_currency,
            total=format(Decimal(str(values[3 * n] or 0)).quantize(CENT, context=WIDE), "f"),
            converted=int(values[3 * n + 1] or 0),
            not_converted=int(values[3 * n + 2] or 0),
        )
        for n, key in enumerate(TOTALLED_IN_SUMMARY)
    ]


async def dashboard_page(
    session: AsyncSession,
    *,
    firm_id: uuid.UUID,
    query: DashboardQuery,
    weights: HealthWeights = DEFAULT_WEIGHTS,
    reporting_currency: str | None = None,
) -> DashboardPage:
    conditions = _conditions(query, firm_id, reporting_currency)
    counted = select(func.count()).select_from(ClientRow).outerjoin(CompanyRow, _companies_of_client())
    total_query = _with_rates(counted, reporting_currency).where(*conditions)
    total = (await session.execute(total_query)).scalar_one()
    page = (
        _joined(reporting_currency)
        .where(*conditions)
        .order_by(*_order(query, reporting_currency))
        .offset(query.offset)
        .limit(query.limit)
    )
    rows = [
        _page_row(client, company, weights, rate, reporting_currency)
        for client, company, rate in (await session.execute(page)).all()
    ]
    return DashboardPage(
        rows=rows,
        total=total,
        offset=query.offset,
        limit=query.limit,
        states=await state_counts(session, firm_id=firm_id),
        reporting_currency=reporting_currency,
        totals=await _totals(session, conditions, reporting_currency) if reporting_currency else [],
    )


async def rows_of_clients(
    session: AsyncSession,
    *,
    firm_id: uuid.UUID,
    client_ids: set[uuid.UUID],
    weights: HealthWeights = DEFAULT_WEIGHTS,
    reporting_currency: str | None = None,
) -> list[PageRow]:
    """The current rows of some clients (what the live page replaces after a change)."""
    if not client_ids:
        return []
    statement = (
        _joined(reporting_currency)
        .where(col(ClientRow.firm_id) == firm_id, col(ClientRow.client_id).in_(client_ids))
        .order_by(*_order(DashboardQuery()))
    )
    rows: list[PageRow] = []
    for client, company, rate in (await session.execute(statement)).all():
        row = _page_row(client, company, weights, rate, reporting_currency)
        if client.removed:
            row.state = "removed"
        rows.append(row)
    return rows


class DashboardRow(PageRow):
    """A dashboard row with all its figures (the key-figures workbook's row)."""

    figures: dict[str, Any] | None


async def dashboard_rows(
    session: AsyncSession,
    *,
    firm_id: uuid.UUID,
    weights: HealthWeights = DEFAULT_WEIGHTS,
    reporting_currency: str | None = None,
) -> list[DashboardRow]:
    """Every row of the firm's dashboard in its default order, with the full figures, and
    with a reporting currency each amount in it (or why it cannot be)."""
    statement = (
        _joined(reporting_currency)
        .where(col(ClientRow.firm_id) == firm_id, client_shown())
        .order_by(*_order(DashboardQuery()))
    )
    return [
        DashboardRow(
            **_page_row(client, company, weights, rate, reporting_currency).model_dump(),
            figures=parsed_json(company.figures_json) if company is not None else None,
        )
        for client, company, rate in (await session.execute(statement)).all()
    ]


async def figures_ages(session: AsyncSession, now: datetime) -> list[float]:
    """How old, in seconds, the figures shown for every live company of every firm are (for
    metrics only: ages, never which firm or company)."""
    read_at = await session.scalars(
        select(CompanyRow.as_of)
        .join(ClientRow, col(ClientRow.client_id) == col(CompanyRow.client_id))
        .where(client_shown(), col(CompanyRow.as_of).is_not(None))
    )
    return [max(0.0, (now - as_of).total_seconds()) for as_of in read_at if as_of is not None]


async def currencies_in_use(session: AsyncSession, *, firm_id: uuid.UUID) -> list[str]:
    """The ISO-shaped currencies the firm's companies keep books or rates in: what the
    reporting currency is chosen from."""
    books = select(col(CompanyRow.currency_code)).where(col(CompanyRow.firm_id) == firm_id).distinct()
    rates = select(col(CompanyRateRow.currency_code)).where(col(CompanyRateRow.firm_id) == firm_id).distinct()
    found = set((await session.scalars(books)).all()) | set((await session.scalars(rates)).all())
    return sorted(code for code in found if code and re.fullmatch("[A-Z]{3}", code))
