"""How far a refresh run (every refresh one request started) has come."""

from __future__ import annotations

import uuid

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from hub_gateway.readmodel.models import (
    ClientRow,
    CompanyRow,
    RefreshRow,
)


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
