"""Business Central's change notices: each becomes an audit event and, coalesced per
company, a refresh of the company that changed.

BC already waits about 30 s after a first change before it notifies; the hub adds its own
window (``HUB_NOTIFICATION_COALESCE_SECONDS``) so a company that changes all day is read at
most once per window: the first notice asks at once, later ones within the window wait,
and the window's end asks once for all of them (``refresh_waiting_companies``).

A company's next refresh is also not asked for while its last one is unanswered: a slow or
throttled tenant whose refreshes wait to be retried would otherwise be asked again every
window, each request holding a place in the fetchers' shared queue for every firm for as
long as its retries last. Its notices wait until the outcome (``refresh_answered``, from
service.refresh_outcomes), or until ANSWER_AWAITED_AT_MOST passed, longer than a refresh
and all its retries take.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from hub_common.commands import RecordBusinessCentralChanges, RejectionReason, refused
from hub_common.events import Actor, BusinessCentralChanged
from hub_common.i18n import N_
from hub_registry.domain.refresh_schedule import CLOCK_SKEW_TOLERANCE
from hub_registry.models import Client, CompanyChangeRefresh, TenantGrant
from hub_registry.service.refreshes import ANSWER_AWAITED_AT_MOST, emit_refresh, unanswered
from hub_registry.service.shared import Context, emit

NOTICES_ACTOR = Actor.service("business-central")


async def _awaiting(session: AsyncSession, row: CompanyChangeRefresh, refresh_id: uuid.UUID) -> None:
    await session.execute(
        update(CompanyChangeRefresh)
        .where(
            col(CompanyChangeRefresh.client_id) == row.client_id,
            col(CompanyChangeRefresh.company_id) == row.company_id,
        )
        .values(awaiting_refresh_id=refresh_id)
        .execution_options(synchronize_session=False)
    )


async def refresh_answered(
    *, session: AsyncSession, client_id: uuid.UUID, refresh_id: uuid.UUID, company_id: uuid.UUID | None
) -> None:
    """A refresh's outcome arrived: of one company, or of the whole client (``company_id``
    None). Notices that waited for it ask at their window's end."""
    condition = [
        col(CompanyChangeRefresh.client_id) == client_id,
        col(CompanyChangeRefresh.awaiting_refresh_id) == refresh_id,
    ]
    if company_id is not None:
        condition.append(col(CompanyChangeRefresh.company_id) == company_id)
    await session.execute(
        update(CompanyChangeRefresh)
        .where(*condition)
        .values(awaiting_refresh_id=None)
        .execution_options(synchronize_session=False)
    )


def _window_over(last_requested_at: datetime, now: datetime, coalesce: timedelta) -> bool:
    """Whether the coalescing window of a request ended: also when a replica whose clock ran
    ahead made the request, whose window would otherwise last as long again."""
    return now - last_requested_at >= coalesce or last_requested_at > now + CLOCK_SKEW_TOLERANCE


async def _claim(session: AsyncSession, row: CompanyChangeRefresh, *, now: datetime) -> bool:
    """Take the company's next refresh (compare-and-set: two replicas never both ask)."""
    claimed = await session.execute(
        update(CompanyChangeRefresh)
        .where(
            col(CompanyChangeRefresh.client_id) == row.client_id,
            col(CompanyChangeRefresh.company_id) == row.company_id,
            col(CompanyChangeRefresh.last_requested_at) == row.last_requested_at,
        )
        .values(last_requested_at=now, pending_since=None)
        .execution_options(synchronize_session=False)
    )
    return getattr(claimed, "rowcount", 0) == 1


async def _granted_live_client(session: AsyncSession, firm_id: uuid.UUID, client_id: uuid.UUID) -> Client | None:
    granted = (
        select(TenantGrant.id)
        .where(
            TenantGrant.firm_id == Client.firm_id,
            TenantGrant.tenant_id == Client.tenant_id,
            col(TenantGrant.revoked_at).is_(None),
        )
        .exists()
    )
    return (
        await session.execute(
            select(Client).where(
                Client.id == client_id, Client.firm_id == firm_id, col(Client.removed_at).is_(None), granted
            )
        )
    ).scalar_one_or_none()


async def record_changes(
    *, session: AsyncSession, command: RecordBusinessCentralChanges, coalesce: timedelta, now: datetime
) -> uuid.UUID | None:
    """Store the notice and ask for the company's refresh, now or at the end of its window;
    the refresh asked for now, if any. The notice that asks, and the first that waits, are
    events in the audit log; later ones within the same window add nothing to it."""
    client = await _granted_live_client(session, command.firm_id, command.client_id)
    if client is None:
        # Removed, another firm's, or the tenant took the access back: BC is told 404 and
        # deletes the subscription.
        raise refused(RejectionReason.NOT_FOUND, N_("No such client"), "client_id")
    context = Context.of(command)
    row = await session.get(CompanyChangeRefresh, (command.client_id, command.company_id))
    refresh_id: uuid.UUID | None = None
    if row is None:
        # A concurrent first notice of the same company fails this insert and its
        # transaction; BC hears 503 and sends the notice again.
        refresh_id = await emit_refresh(session, context, client, company_id=command.company_id)
        session.add(
            CompanyChangeRefresh(
                client_id=client.id,
                company_id=command.company_id,
                firm_id=client.firm_id,
                last_requested_at=now,
                awaiting_refresh_id=refresh_id,
            )
        )
    elif (
        _window_over(row.last_requested_at, now, coalesce)
        and not unanswered(row.awaiting_refresh_id, row.last_requested_at, now)
        and await _claim(session, row, now=now)
    ):
        refresh_id = await emit_refresh(session, context, client, company_id=command.company_id)
        await _awaiting(session, row, refresh_id)
    elif row.pending_since is None:
        await session.execute(
            update(CompanyChangeRefresh)
            .where(
                col(CompanyChangeRefresh.client_id) == row.client_id,
                col(CompanyChangeRefresh.company_id) == row.company_id,
                col(CompanyChangeRefresh.pending_since).is_(None),
            )
            .values(pending_since=now)
            .execution_options(synchronize_session=False)
        )
    else:
        # A refresh at the window's end is already owed: recording every further notice of
        # a busy (or replayed) window would grow the audit log with nothing new in it.
        return None
    await emit(
        session,
        context,
        BusinessCentralChanged(
            client_id=client.id,
            company_id=command.company_id,
            entities=command.entities,
            notices=command.notices,
            collection=command.collection,
            refresh_id=refresh_id,
        ),
    )
    return refresh_id


async def refresh_waiting_companies(
    *, session: AsyncSession, coalesce: timedelta, now: datetime, correlation_id: str
) -> int:
    """One refresh per company whose notices waited out its window, and its last refresh's
    outcome; how many."""
    waiting = (
        (
            await session.execute(
                select(CompanyChangeRefresh).where(
                    col(CompanyChangeRefresh.pending_since).is_not(None),
                    or_(  # _window_over(), in SQL
                        col(CompanyChangeRefresh.last_requested_at) <= now - coalesce,
                        col(CompanyChangeRefresh.last_requested_at) > now + CLOCK_SKEW_TOLERANCE,
                    ),
                    or_(  # not unanswered(), in SQL
                        col(CompanyChangeRefresh.awaiting_refresh_id).is_(None),
                        col(CompanyChangeRefresh.last_requested_at) <= now - ANSWER_AWAITED_AT_MOST,
                        col(CompanyChangeRefresh.last_requested_at) > now + CLOCK_SKEW_TOLERANCE,
                    ),
                )
            )
        )
        .scalars()
        .all()
    )
    requested = 0
    for row in waiting:
        client = await _granted_live_client(session, row.firm_id, row.client_id)
        if not await _claim(session, row, now=now) or client is None:
            continue
        refresh_id = await emit_refresh(
            session, Context(row.firm_id, NOTICES_ACTOR, correlation_id), client, company_id=row.company_id
        )
        await _awaiting(session, row, refresh_id)
        requested += 1
    return requested
