"""Check Errors: the open problems of a firm's clients as a worklist (grouped, resolved by
the next successful read), and the history of every failed connection with its details."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col, select

from hub_gateway.dashboard.queries import shown_company_name
from hub_gateway.readmodel.models import (
    ClientRow,
    CompanyRow,
    FailureRow,
)


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


def _entry(failure: FailureRow, client: ClientRow | None, company: CompanyRow | None = None) -> FailureEntry:
    return FailureEntry(
        failure_id=failure.failure_id,
        origin="connection_test" if failure.origin == "connection_test" else "refresh",
        client_id=failure.client_id,
        client_name=client.name if client else None,
        client_removed=bool(client and client.removed),
        company_id=failure.company_id,
        company_name=_company_name(failure, company),
        tenant=failure.tenant or (client.tenant if client else None),
        environment=failure.environment or (client.environment if client else None),
        occurred_at=failure.occurred_at,
        failure=json.loads(failure.failure_json),
        attempt=failure.attempt,
        next_attempt_at=failure.next_attempt_at,
    )


def _company_name(failure: FailureRow, company: CompanyRow | None) -> str | None:
    """The company as the dashboard shows it (its display name in BC) while it is on the
    dashboard; else as the failure named it."""
    return shown_company_name(company) if company is not None else failure.company_name


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
    kind: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> FailurePage:
    conditions: list[ColumnElement[bool]] = [col(FailureRow.firm_id) == firm_id]
    if client_id is not None:
        conditions.append(col(FailureRow.client_id) == client_id)
    if kind is not None:
        conditions.append(col(FailureRow.kind) == kind)
    total = (await session.execute(select(func.count()).select_from(FailureRow).where(*conditions))).scalar_one()
    statement = (
        select(FailureRow, ClientRow, CompanyRow)
        .outerjoin(ClientRow, and_(col(ClientRow.client_id) == FailureRow.client_id, col(ClientRow.firm_id) == firm_id))
        .outerjoin(
            CompanyRow,
            and_(
                col(CompanyRow.firm_id) == firm_id,
                col(CompanyRow.client_id) == FailureRow.client_id,
                col(CompanyRow.company_id) == FailureRow.company_id,
            ),
        )
        .where(*conditions)
        .order_by(col(FailureRow.occurred_at).desc(), col(FailureRow.failure_id))
        .offset(offset)
        .limit(limit)
    )
    entries = [
        _entry(failure, client, company) for failure, client, company in (await session.execute(statement)).all()
    ]
    return FailurePage(failures=entries, total=total, offset=offset, limit=limit)


# ---------------------------------------------------------------- the worklist

ProblemStatus = Literal["open", "resolved"]


class Problem(BaseModel):
    """One problem of one client or company: every failure of one kind, grouped.

    It is open until the company (or, for a failure before any company was read, the
    client) is read successfully after its last failure, or a list of the client's
    companies read after it no longer holds the company (for the client's own problem: any
    list); then it is resolved, and stays in the list of resolved problems with the time it
    was.
    """

    client_id: uuid.UUID | None
    client_name: str | None
    client_removed: bool
    company_id: uuid.UUID | None
    company_name: str | None
    kind: str
    occurrences: int
    first_seen: datetime
    last_seen: datetime
    status: ProblemStatus
    resolved_at: datetime | None
    # The newest failure, with its summary, fix and technical details.
    latest: FailureEntry


class ProblemPage(BaseModel):
    problems: list[Problem]
    total: int
    open: int
    offset: int
    limit: int


# A problem: the client (None: a test of a card not saved), the company (None: the client
# as a whole) and the kind of failure.
ProblemKey = tuple[uuid.UUID | None, uuid.UUID | None, str]


def _resolution(
    last_seen: datetime,
    company_id: uuid.UUID | None,
    client: ClientRow | None,
    reads: dict[uuid.UUID, datetime],
    listed: set[uuid.UUID],
) -> tuple[ProblemStatus, datetime | None]:
    """Resolved by a successful read after the last failure: of the company, or of any
    company of the client when the failure came before companies were read. A list of the
    client's companies read after it resolves it too: one without the company (deleted in
    BC, its access withdrawn, or the card moved to another place), which will not be read
    again; for the client, any (its BC answered, though it may hold no company)."""
    if client is None or client.removed:
        return "resolved", None
    listed_at = client.companies_listed_at
    listed_after = listed_at if listed_at is not None and listed_at > last_seen else None
    if company_id is not None:
        read_at = reads.get(company_id)
        if read_at is not None and read_at > last_seen:
            return "resolved", read_at
        if listed_after is not None and company_id not in listed:
            return "resolved", listed_after
        return "open", None
    later = [read_at for read_at in reads.values() if read_at > last_seen]
    if listed_after is not None:
        later.append(listed_after)
    return ("resolved", min(later)) if later else ("open", None)


def _last_success_before(
    last_seen: datetime, company_id: uuid.UUID | None, client: ClientRow | None, reads: dict[uuid.UUID, datetime]
) -> datetime | None:
    """When the client's BC last answered well before an open problem's newest failure: a
    read of the company (of any company, or its list of companies, for the client as a
    whole); None when it never did."""
    if client is None:
        return None
    if company_id is not None:
        read_at = reads.get(company_id)
        return read_at if read_at is not None and read_at < last_seen else None
    before = [read_at for read_at in reads.values() if read_at < last_seen]
    if client.companies_listed_at is not None and client.companies_listed_at < last_seen:
        before.append(client.companies_listed_at)
    return max(before) if before else None


async def problems(
    session: AsyncSession,
    *,
    firm_id: uuid.UUID,
    status: ProblemStatus | None = "open",
    client_id: uuid.UUID | None = None,
    kind: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> ProblemPage:
    """Check Errors as a worklist: one entry per problem, open ones first, newest first."""
    conditions: list[ColumnElement[bool]] = [col(FailureRow.firm_id) == firm_id, col(FailureRow.origin) == "refresh"]
    if client_id is not None:
        conditions.append(col(FailureRow.client_id) == client_id)
    if kind is not None:
        conditions.append(col(FailureRow.kind) == kind)
    problem = (col(FailureRow.client_id), col(FailureRow.company_id), col(FailureRow.kind))
    ranked = (
        select(
            FailureRow,
            func.row_number()
            .over(partition_by=problem, order_by=(col(FailureRow.occurred_at).desc(), col(FailureRow.failure_id)))
            .label("newest_first"),
            func.count().over(partition_by=problem).label("occurrences"),
            func.min(col(FailureRow.occurred_at)).over(partition_by=problem).label("first_seen"),
        )
        .where(*conditions)
        .subquery()
    )
    latest = aliased(FailureRow, ranked)
    rows = (
        await session.execute(
            select(latest, ranked.c.occurrences, ranked.c.first_seen).where(ranked.c.newest_first == 1)
        )
    ).all()
    client_ids = {failure.client_id for failure, _, _ in rows if failure.client_id is not None}
    clients = {
        client.client_id: client
        for client in (
            await session.execute(
                select(ClientRow).where(col(ClientRow.firm_id) == firm_id, col(ClientRow.client_id).in_(client_ids))
            )
        ).scalars()
    }
    reads: dict[uuid.UUID, dict[uuid.UUID, datetime]] = {}
    companies: dict[tuple[uuid.UUID, uuid.UUID], CompanyRow] = {}
    # The companies each client has now (read or not yet).
    listed: dict[uuid.UUID, set[uuid.UUID]] = {}
    for company in (
        await session.execute(
            select(CompanyRow).where(col(CompanyRow.firm_id) == firm_id, col(CompanyRow.client_id).in_(client_ids))
        )
    ).scalars():
        companies[(company.client_id, company.company_id)] = company
        listed.setdefault(company.client_id, set()).add(company.company_id)
        if company.as_of is not None:
            reads.setdefault(company.client_id, {})[company.company_id] = company.as_of
    resolutions: dict[ProblemKey, tuple[ProblemStatus, datetime | None]] = {}
    # An open problem is counted from the last success before it (a read of the company, or
    # for the client any read or its list of companies): failures before that belonged to an
    # episode that ended, and "6 times since January" was said of one that began in July.
    since: dict[ProblemKey, datetime] = {}
    for failure, _, _ in rows:
        key = (failure.client_id, failure.company_id, failure.kind)
        client = clients.get(failure.client_id) if failure.client_id else None
        client_reads = reads.get(failure.client_id, {}) if failure.client_id else {}
        client_listed = listed.get(failure.client_id, set()) if failure.client_id else set()
        resolutions[key] = _resolution(failure.occurred_at, failure.company_id, client, client_reads, client_listed)
        began = _last_success_before(failure.occurred_at, failure.company_id, client, client_reads)
        if resolutions[key][0] == "open" and began is not None:
            since[key] = began
    episodes: dict[ProblemKey, tuple[int, datetime]] = {}
    if since:
        failures_since = await session.execute(
            select(
                col(FailureRow.client_id), col(FailureRow.company_id), col(FailureRow.kind), col(FailureRow.occurred_at)
            ).where(*conditions, col(FailureRow.occurred_at) > min(since.values()))
        )
        for client_of, company_of, kind_of, occurred_at in failures_since:
            key = (client_of, company_of, kind_of)
            if key in since and occurred_at > since[key]:
                count, first = episodes.get(key, (0, occurred_at))
                episodes[key] = (count + 1, min(first, occurred_at))
    found: list[Problem] = []
    for failure, occurrences, first_seen in rows:
        client = clients.get(failure.client_id) if failure.client_id else None
        key = (failure.client_id, failure.company_id, failure.kind)
        state, resolved_at = resolutions[key]
        occurrences, first_seen = episodes.get(key, (occurrences, first_seen))
        failed_company = (
            companies.get((failure.client_id, failure.company_id))
            if failure.client_id is not None and failure.company_id is not None
            else None
        )
        found.append(
            Problem(
                client_id=failure.client_id,
                client_name=client.name if client else None,
                client_removed=bool(client and client.removed),
                company_id=failure.company_id,
                company_name=_company_name(failure, failed_company),
                kind=failure.kind,
                occurrences=occurrences,
                first_seen=first_seen,
                last_seen=failure.occurred_at,
                status=state,
                resolved_at=resolved_at,
                latest=_entry(failure, client, failed_company),
            )
        )
    found.sort(key=lambda p: (p.status != "open", -p.last_seen.timestamp()))
    # The firm's open problems, whichever status is listed.
    open_count = sum(1 for p in found if p.status == "open")
    if status is not None:
        found = [p for p in found if p.status == status]
    return ProblemPage(
        problems=found[offset : offset + limit], total=len(found), open=open_count, offset=offset, limit=limit
    )
