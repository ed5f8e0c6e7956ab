"""Reading the read model; every query takes the firm from the authenticated principal."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import Context, Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, and_, case, func, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import KeyedColumnElement
from sqlmodel import col, select

from hub_gateway.readmodel.columns import FIGURE_COLUMNS, FIGURES_BY_KEY
from hub_gateway.readmodel.models import (
    AccountantRow,
    ClientRow,
    CompanyRow,
    ConnectionTestRow,
    FailureRow,
    FirmRow,
    RefreshRow,
    TenantAccessRow,
)


class TenantAccess(BaseModel):
    """Whether the client's tenant lets the firm read it (see the README's trust model)."""

    # granted: figures are read; waiting: the client has not given permission yet;
    # revoked: permission was taken back (reason says by whom).
    state: Literal["granted", "waiting", "revoked"]
    method: str | None = None
    granted_by: str | None = None
    reason: str | None = None
    changed_at: datetime | None = None


WAITING = TenantAccess(state="waiting")


def tenant_access(row: TenantAccessRow | None) -> TenantAccess:
    if row is None:
        return WAITING
    return TenantAccess(
        state="granted" if row.granted else "revoked",
        method=row.method,
        granted_by=row.granted_by,
        reason=row.reason,
        changed_at=row.changed_at,
    )


class ClientSummary(BaseModel):
    client_id: uuid.UUID
    name: str
    client_url: str
    tenant: str
    tenant_id: uuid.UUID | None
    environment: str
    source: str
    state: str
    card: dict[str, Any]
    failure: dict[str, Any] | None
    access: TenantAccess


def _loads(text: str | None) -> dict[str, Any] | None:
    return json.loads(text) if text else None


def client_summary(row: ClientRow, access: TenantAccessRow | None) -> ClientSummary:
    return ClientSummary(
        client_id=row.client_id,
        name=row.name,
        client_url=row.client_url,
        tenant=row.tenant,
        tenant_id=row.tenant_id,
        environment=row.environment,
        source=row.source,
        state=row.state,
        card=json.loads(row.card_json),
        failure=_loads(row.failure_json),
        access=tenant_access(access),
    )


async def firm_tenant_access(session: AsyncSession, *, firm_id: uuid.UUID) -> dict[uuid.UUID, TenantAccessRow]:
    rows = (await session.execute(select(TenantAccessRow).where(TenantAccessRow.firm_id == firm_id))).scalars()
    return {row.tenant_id: row for row in rows}


async def access_of(session: AsyncSession, client: ClientRow) -> TenantAccessRow | None:
    if client.tenant_id is None:
        return None
    return await session.get(TenantAccessRow, (client.firm_id, client.tenant_id))


async def clients(session: AsyncSession, *, firm_id: uuid.UUID) -> list[ClientSummary]:
    rows = (
        await session.execute(
            select(ClientRow)
            .where(ClientRow.firm_id == firm_id, col(ClientRow.removed).is_(False))
            .order_by(ClientRow.name)
        )
    ).scalars()
    access = await firm_tenant_access(session, firm_id=firm_id)
    return [client_summary(row, access.get(row.tenant_id) if row.tenant_id else None) for row in rows]


async def client_in_firm(session: AsyncSession, *, firm_id: uuid.UUID, client_id: uuid.UUID) -> ClientRow | None:
    row = await session.get(ClientRow, client_id)
    if row is None or row.firm_id != firm_id or row.removed:
        return None
    return row


async def firm_name(session: AsyncSession, *, firm_id: uuid.UUID) -> str:
    firm = await session.get(FirmRow, firm_id)
    return firm.name if firm is not None else "Your accountants"


async def accountant_by_email(session: AsyncSession, email: str) -> AccountantRow | None:
    result = await session.execute(select(AccountantRow).where(AccountantRow.email == email))
    return result.scalar_one_or_none()


async def connection_test(session: AsyncSession, *, firm_id: uuid.UUID, test_id: uuid.UUID) -> ConnectionTestRow | None:
    row = await session.get(ConnectionTestRow, test_id)
    return row if row is not None and row.firm_id == firm_id else None


async def accountants(session: AsyncSession, *, firm_id: uuid.UUID) -> list[AccountantRow]:
    rows = await session.execute(
        select(AccountantRow).where(AccountantRow.firm_id == firm_id).order_by(AccountantRow.email)
    )
    return list(rows.scalars())


async def company_in_firm(
    session: AsyncSession, *, firm_id: uuid.UUID, client_id: uuid.UUID, company_id: uuid.UUID
) -> CompanyRow | None:
    row = await session.get(CompanyRow, (client_id, company_id))
    return row if row is not None and row.firm_id == firm_id else None


# ---------------------------------------------------------------- the dashboard page

CENT = Decimal("0.01")
WIDE = Context(prec=60)
TEXT_SORT_KEYS = ("client_name", "company_name", "state", "as_of")
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
    value: Annotated[Decimal, Field(allow_inf_nan=False, max_digits=28, decimal_places=2)]


class DashboardQuery(BaseModel):
    """Which rows, in which order, which page. Every field is optional."""

    text: Annotated[str, Field(max_length=200)] | None = None
    client_id: uuid.UUID | None = None
    assigned_accountant_id: uuid.UUID | None = None
    has_errors: bool = False
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


class StateCounts(BaseModel):
    queued: int = 0
    refreshing: int = 0
    waiting: int = 0
    ok: int = 0
    failed: int = 0


class DashboardPage(BaseModel):
    rows: list[PageRow]
    total: int
    offset: int
    limit: int
    # Over the firm's whole dashboard, whatever the filters.
    states: StateCounts


def _row_state() -> ColumnElement[str]:
    return func.coalesce(col(CompanyRow.state), col(ClientRow.state))


def _escaped_like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _figure(key: str) -> KeyedColumnElement[Any]:
    column: KeyedColumnElement[Any] = getattr(CompanyRow, FIGURES_BY_KEY[key].attribute)
    return column


def _conditions(query: DashboardQuery, firm_id: uuid.UUID) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [col(ClientRow.firm_id) == firm_id, col(ClientRow.removed).is_(False)]
    if query.text:
        pattern = _escaped_like(query.text.strip())
        conditions.append(
            or_(
                col(ClientRow.name).ilike(pattern, escape="\\"),
                col(CompanyRow.company_name).ilike(pattern, escape="\\"),
                col(CompanyRow.display_name).ilike(pattern, escape="\\"),
            )
        )
    if query.client_id is not None:
        conditions.append(col(ClientRow.client_id) == query.client_id)
    if query.assigned_accountant_id is not None:
        conditions.append(col(ClientRow.assigned_accountant_id) == query.assigned_accountant_id)
    if query.has_errors:
        conditions.append(_row_state() == "failed")
    if query.overdue:
        conditions.append(
            or_(
                col(CompanyRow.figure_overdue_sales_invoices_count) > 0,
                col(CompanyRow.figure_overdue_purchase_invoices_count) > 0,
            )
        )
    for threshold in query.thresholds:
        figure = _figure(threshold.column)
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


def _order(query: DashboardQuery) -> list[Any]:
    sort_column: Any
    if query.sort == "client_name":
        sort_column = func.lower(col(ClientRow.name))
    elif query.sort == "company_name":
        sort_column = func.lower(col(CompanyRow.company_name))
    elif query.sort == "state":
        sort_column = _row_state()
    elif query.sort == "as_of":
        sort_column = col(CompanyRow.as_of)
    else:
        sort_column = _figure(query.sort)
    # Rows without the figure go last whichever way the column sorts (portable NULLS LAST).
    missing_last = case((sort_column.is_(None), 1), else_=0)
    direction = sort_column.desc() if query.descending else sort_column.asc()
    # Ties broken by name and id, so pages never repeat or skip a row.
    return [
        missing_last,
        direction,
        func.lower(col(ClientRow.name)),
        col(ClientRow.client_id),
        func.lower(col(CompanyRow.company_name)),
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
    failure = _loads(failure_json)
    if failure is None:
        return None
    return FailureSummary(
        kind=str(failure.get("kind", "")),
        summary=str(failure.get("summary", "")),
        fix=str(failure.get("fix", "")),
        occurred_at=failure.get("occurred_at"),
    )


def _page_row(client: ClientRow, company: CompanyRow | None) -> PageRow:
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
        company_name=company.display_name or company.company_name,
        state=company.state,
        as_of=company.as_of,
        currency_code=company.currency_code,
        web_client_link=company.web_client_link,
        values={column.key: _value(getattr(company, column.attribute)) for column in FIGURE_COLUMNS},
        failure=_failure_summary(company.failure_json),
        next_attempt_at=company.next_attempt_at,
    )


def _companies_of_client() -> ColumnElement[bool]:
    return and_(col(CompanyRow.client_id) == ClientRow.client_id, col(CompanyRow.firm_id) == ClientRow.firm_id)


def _joined() -> Any:
    return select(ClientRow, CompanyRow).outerjoin(CompanyRow, _companies_of_client())


async def state_counts(session: AsyncSession, *, firm_id: uuid.UUID) -> StateCounts:
    state = _row_state().label("state")
    counted = (
        select(state, func.count())
        .select_from(ClientRow)
        .outerjoin(CompanyRow, _companies_of_client())
        .where(col(ClientRow.firm_id) == firm_id, col(ClientRow.removed).is_(False))
        .group_by(state)
    )
    counts = StateCounts()
    for name, count in (await session.execute(counted)).all():
        if name in StateCounts.model_fields:
            setattr(counts, name, count)
    return counts


async def dashboard_page(session: AsyncSession, *, firm_id: uuid.UUID, query: DashboardQuery) -> DashboardPage:
    conditions = _conditions(query, firm_id)
    total_query = (
        select(func.count()).select_from(ClientRow).outerjoin(CompanyRow, _companies_of_client()).where(*conditions)
    )
    total = (await session.execute(total_query)).scalar_one()
    page = _joined().where(*conditions).order_by(*_order(query)).offset(query.offset).limit(query.limit)
    rows = [_page_row(client, company) for client, company in (await session.execute(page)).all()]
    return DashboardPage(
        rows=rows,
        total=total,
        offset=query.offset,
        limit=query.limit,
        states=await state_counts(session, firm_id=firm_id),
    )


async def rows_of_clients(session: AsyncSession, *, firm_id: uuid.UUID, client_ids: set[uuid.UUID]) -> list[PageRow]:
    """The current rows of some clients (what the live page replaces after a change)."""
    if not client_ids:
        return []
    statement = (
        _joined()
        .where(col(ClientRow.firm_id) == firm_id, col(ClientRow.client_id).in_(client_ids))
        .order_by(*_order(DashboardQuery()))
    )
    rows: list[PageRow] = []
    for client, company in (await session.execute(statement)).all():
        row = _page_row(client, company)
        if client.removed:
            row.state = "removed"
        rows.append(row)
    return rows


class DashboardRow(PageRow):
    """A dashboard row with all its figures (the key-figures workbook's row)."""

    figures: dict[str, Any] | None


async def dashboard_rows(session: AsyncSession, *, firm_id: uuid.UUID) -> list[DashboardRow]:
    """Every row of the firm's dashboard in its default order, with the full figures."""
    statement = (
        _joined()
        .where(col(ClientRow.firm_id) == firm_id, col(ClientRow.removed).is_(False))
        .order_by(*_order(DashboardQuery()))
    )
    return [
        DashboardRow(
            **_page_row(client, company).model_dump(),
            figures=_loads(company.figures_json) if company is not None else None,
        )
        for client, company in (await session.execute(statement)).all()
    ]


# ---------------------------------------------------------------- the details pane


class CompanyDetails(BaseModel):
    client_id: uuid.UUID
    client_name: str
    client_url: str
    company_id: uuid.UUID
    company_name: str
    display_name: str | None
    state: str
    as_of: datetime | None
    currency_code: str | None
    web_client_link: str | None
    figures: dict[str, Any] | None
    failure: dict[str, Any] | None
    next_attempt_at: datetime | None


async def company_details(
    session: AsyncSession, *, firm_id: uuid.UUID, client_id: uuid.UUID, company_id: uuid.UUID
) -> CompanyDetails | None:
    client = await client_in_firm(session, firm_id=firm_id, client_id=client_id)
    company = await company_in_firm(session, firm_id=firm_id, client_id=client_id, company_id=company_id)
    if client is None or company is None:
        return None
    return CompanyDetails(
        client_id=client.client_id,
        client_name=client.name,
        client_url=client.client_url,
        company_id=company.company_id,
        company_name=company.company_name,
        display_name=company.display_name,
        state=company.state,
        as_of=company.as_of,
        currency_code=company.currency_code,
        web_client_link=company.web_client_link,
        figures=_loads(company.figures_json),
        failure=_loads(company.failure_json),
        next_attempt_at=company.next_attempt_at,
    )


# ---------------------------------------------------------------- Check Errors


class FailureEntry(BaseModel):
    failure_id: uuid.UUID
    origin: Literal["refresh", "connection_test"]
    client_id: uuid.UUID | None
    client_name: str | None
    client_removed: bool
    company_id: uuid.UUID | None
    company_name: str | None
    tenant: str | None
    environment: str | None
    occurred_at: datetime
    # The classified failure: kind, summary, fix and the technical details.
    failure: dict[str, Any]
    # Set for a refresh waiting to retry: the attempt that failed and when the next is due.
    attempt: int | None = None
    next_attempt_at: datetime | None = None


class FailurePage(BaseModel):
    failures: list[FailureEntry]
    total: int
    offset: int
    limit: int


async def failures(
    session: AsyncSession,
    *,
    firm_id: uuid.UUID,
    client_id: uuid.UUID | None = None,
    offset: int = 0,
    limit: int = 100,
) -> FailurePage:
    conditions: list[ColumnElement[bool]] = [col(FailureRow.firm_id) == firm_id]
    if client_id is not None:
        conditions.append(col(FailureRow.client_id) == client_id)
    total = (await session.execute(select(func.count()).select_from(FailureRow).where(*conditions))).scalar_one()
    statement = (
        select(FailureRow, ClientRow)
        .outerjoin(ClientRow, and_(col(ClientRow.client_id) == FailureRow.client_id, col(ClientRow.firm_id) == firm_id))
        .where(*conditions)
        .order_by(col(FailureRow.occurred_at).desc(), col(FailureRow.failure_id))
        .offset(offset)
        .limit(limit)
    )
    entries = [
        FailureEntry(
            failure_id=failure.failure_id,
            origin="connection_test" if failure.origin == "connection_test" else "refresh",
            client_id=failure.client_id,
            client_name=client.name if client else None,
            client_removed=bool(client and client.removed),
            company_id=failure.company_id,
            company_name=failure.company_name,
            tenant=failure.tenant or (client.tenant if client else None),
            environment=failure.environment or (client.environment if client else None),
            occurred_at=failure.occurred_at,
            failure=json.loads(failure.failure_json),
            attempt=failure.attempt,
            next_attempt_at=failure.next_attempt_at,
        )
        for failure, client in (await session.execute(statement)).all()
    ]
    return FailurePage(failures=entries, total=total, offset=offset, limit=limit)


# ---------------------------------------------------------------- refresh progress


class RefreshProgress(BaseModel):
    """How far the refreshes one request started have come ("37 of 120 refreshed")."""

    refreshes: int  # RefreshRequested events seen so far for the request
    total: int  # the rows they asked for: companies, or clients whose companies are unknown yet
    done: int
    failed: int


def _has_outcome_of(company: CompanyRow, refresh: RefreshRow) -> bool:
    """The company shows this refresh's outcome, or a later one (a snapshot or a failure)."""
    if company.state not in ("ok", "failed"):
        return False
    return company.outcome_refresh_id == refresh.refresh_id or (
        company.outcome_at is not None and company.outcome_at > refresh.requested_at
    )


async def refresh_progress(session: AsyncSession, *, firm_id: uuid.UUID, correlation_id: str) -> RefreshProgress:
    refreshes = list(
        (
            await session.execute(
                select(RefreshRow).where(
                    col(RefreshRow.firm_id) == firm_id, col(RefreshRow.correlation_id) == correlation_id
                )
            )
        ).scalars()
    )
    if not refreshes:
        return RefreshProgress(refreshes=0, total=0, done=0, failed=0)
    client_ids = {refresh.client_id for refresh in refreshes}
    companies_of: dict[uuid.UUID, list[CompanyRow]] = {}
    for company in (
        await session.execute(
            select(CompanyRow).where(col(CompanyRow.firm_id) == firm_id, col(CompanyRow.client_id).in_(client_ids))
        )
    ).scalars():
        companies_of.setdefault(company.client_id, []).append(company)
    removed = set(
        (
            await session.execute(
                select(ClientRow.client_id).where(
                    col(ClientRow.firm_id) == firm_id,
                    col(ClientRow.client_id).in_(client_ids),
                    col(ClientRow.removed).is_(True),
                )
            )
        ).scalars()
    )
    total = done = failed = 0
    for refresh in refreshes:
        requested = [
            company
            for company in companies_of.get(refresh.client_id, [])
            if refresh.company_id in (None, company.company_id)
        ]
        if not requested:
            # No requested company is known: the client's row counts once, done when the
            # refresh found nothing to read, failed as a whole, or the client was removed.
            total += 1
            if refresh.failed or refresh.companies_found == 0 or refresh.client_id in removed:
                done += 1
                failed += refresh.failed
            continue
        for company in requested:
            total += 1
            if _has_outcome_of(company, refresh):
                done += 1
                failed += company.state == "failed"
    return RefreshProgress(refreshes=len(refreshes), total=total, done=done, failed=failed)


async def figures_ages(session: AsyncSession, now: datetime) -> list[float]:
    """How old, in seconds, the figures shown for every live company of every firm are (for
    metrics only: ages, never which firm or company)."""
    read_at = await session.scalars(
        select(CompanyRow.as_of)
        .join(ClientRow, col(ClientRow.client_id) == col(CompanyRow.client_id))
        .where(col(ClientRow.removed).is_(False), col(CompanyRow.as_of).is_not(None))
    )
    return [max(0.0, (now - as_of).total_seconds()) for as_of in read_at if as_of is not None]
