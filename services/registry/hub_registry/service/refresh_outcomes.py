"""What the registry learns from a refresh's outcomes (a company's snapshot or failure, the
client's failure, a list of the client's companies): the refreshes it asked for and waits
on, so that it does not ask again while the last one waits to be retried.

A refresh of a slow, throttled or offline tenant is retried by the fetchers for up to two
and a half hours, each waiting request holding a place in the fetchers' queue that every
firm shares: asked for again each schedule slot or each window of change notices, such a
tenant's requests would pile up in it. Other outcomes (alerts, tenant grants) are their
services' own.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from hub_common.events import CompaniesDiscovered, CompanySnapshot, RefreshFailed
from hub_registry.service import change_notices, refreshes


async def outcome_arrived(
    *, session: AsyncSession, outcome: CompanySnapshot | RefreshFailed | CompaniesDiscovered
) -> None:
    """A scheduled refresh, or one asked for by hand, is through once a company of it was
    read or failed for good, the client failed, or its list of companies holds none to
    read: it may be asked for again. (Its list alone says nothing: the companies' reads,
    where BC throttles a large tenant, may still wait to be retried.) A company's change
    notices, and a one-company refresh asked for by hand, wait for that company's own
    outcome: its snapshot or failure, the client's failure (before any company was read),
    or a one-company refresh's list of companies without that company (gone from the
    client's BC: no snapshot will come)."""
    reached = not isinstance(outcome, CompaniesDiscovered) or not outcome.companies
    if reached:
        await refreshes.scheduled_refresh_through(
            session=session, client_id=outcome.client_id, refresh_id=outcome.refresh_id
        )
    if isinstance(outcome, CompaniesDiscovered):
        only = outcome.refresh_company_id
        gone = only is not None and only not in {company.company_id for company in outcome.companies}
        if reached or gone:
            await refreshes.manual_refresh_through(
                session=session, client_id=outcome.client_id, refresh_id=outcome.refresh_id
            )
        if not gone:
            return
        company_id: uuid.UUID | None = only
    else:
        await refreshes.manual_refresh_through(
            session=session, client_id=outcome.client_id, refresh_id=outcome.refresh_id
        )
        company_id = outcome.company_id
    await change_notices.refresh_answered(
        session=session, client_id=outcome.client_id, refresh_id=outcome.refresh_id, company_id=company_id
    )
