"""Refresh requests: asked for by an accountant, or by the schedule for every granted client."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from hub_common.commands import RejectionReason, RequestRefresh, refused
from hub_common.events import Actor, RefreshRequested
from hub_registry.models import Client, ScheduleRun, TenantGrant
from hub_registry.service.shared import Context, client_connection, emit, live_client


async def emit_refresh(
    session: AsyncSession, context: Context, client: Client, *, company_id: uuid.UUID | None
) -> uuid.UUID:
    refresh_id = uuid.uuid4()
    await emit(
        session,
        context,
        RefreshRequested(
            refresh_id=refresh_id,
            client_id=client.id,
            connection=client_connection(client),
            company_id=company_id,
            tax_account_numbers=json.loads(client.tax_account_numbers) if client.tax_account_numbers else None,
        ),
    )
    return refresh_id


async def request_refresh(*, session: AsyncSession, command: RequestRefresh) -> list[uuid.UUID]:
    if command.client_id is not None:
        clients = [await live_client(session, command.firm_id, command.client_id)]
    else:
        if command.company_id is not None:
            raise refused(RejectionReason.INVALID, "A company refresh names its client", "client_id")
        clients = list(
            (
                await session.execute(
                    select(Client).where(
                        Client.firm_id == command.firm_id,
                        col(Client.removed_at).is_(None),
                    )
                )
            ).scalars()
        )
    return [
        await emit_refresh(session, Context.of(command), client, company_id=command.company_id) for client in clients
    ]


SCHEDULE_ACTOR = Actor.service("registry-schedule")


async def refresh_every_client(*, session: AsyncSession, correlation_id: str) -> int:
    """The scheduled refresh: one RefreshRequested per live client of every firm that its
    tenant granted access (a client still waiting for permission has nothing to read)."""
    granted = (
        select(TenantGrant.id)
        .where(
            TenantGrant.firm_id == Client.firm_id,
            TenantGrant.tenant_id == Client.tenant_id,
            col(TenantGrant.revoked_at).is_(None),
        )
        .exists()
    )
    clients = (await session.execute(select(Client).where(col(Client.removed_at).is_(None), granted))).scalars().all()
    for client in clients:
        await emit_refresh(session, Context(client.firm_id, SCHEDULE_ACTOR, correlation_id), client, company_id=None)
    return len(clients)


EVERY_CLIENT = "refresh-every-client"


async def next_scheduled_run(session: AsyncSession, *, interval: timedelta, now: datetime) -> datetime:
    """When the scheduled refresh is due: an interval after its last run. A schedule never
    run starts counting now (the first refresh of a new hub is an interval away)."""
    run = await session.get(ScheduleRun, EVERY_CLIENT)
    if run is None:
        session.add(ScheduleRun(name=EVERY_CLIENT, last_run_at=now))
        return now + interval
    return run.last_run_at + interval


async def run_schedule(
    session: AsyncSession, *, interval: timedelta, due: datetime, now: datetime, correlation_id: str
) -> int | None:
    """Refresh every client if the run due at ``due`` has not happened yet; the number of
    clients, or None when another replica ran it (the run is claimed by compare-and-set)."""
    claimed = await session.execute(
        update(ScheduleRun)
        .where(col(ScheduleRun.name) == EVERY_CLIENT, col(ScheduleRun.last_run_at) == due - interval)
        .values(last_run_at=now)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        return None
    return await refresh_every_client(session=session, correlation_id=correlation_id)
