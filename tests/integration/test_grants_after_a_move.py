"""A firm's grant to read a client's tenant, after the card moved to another tenant: what a
refresh of the old tenant says (Entra: the app's consent is gone there) does not touch the
grant of the tenant the card names now."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from hub_common.db import create_engine, migrate, session_factory, transaction
from hub_common.events import Actor, Failure, FailureKind, RefreshFailed, new_envelope
from hub_registry.app import MIGRATIONS, VERSION_TABLE
from hub_registry.models import Client, Firm, TenantGrant
from hub_registry.service import tenant_grants


async def test_consent_lost_at_the_old_tenant_leaves_the_new_ones_grant(database_url: str) -> None:
    await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE)
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    firm_id, client_id, new_tenant = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    long_ago = datetime.now(UTC) - timedelta(days=30)
    try:
        async with transaction(sessions) as session:
            session.add(Firm(id=firm_id, name="Moving firm"))
            await session.flush()
            session.add(
                Client(
                    id=client_id,
                    firm_id=firm_id,
                    name="Contoso",
                    client_url="https://businesscentral.dynamics.com/fabrikam.example/Production",
                    tenant="fabrikam.example",
                    tenant_id=new_tenant,
                    environment="Production",
                    source="manual",
                    accounts_revision=1,
                    moved_revision=1,  # moved from contoso.example
                )
            )
            session.add(
                TenantGrant(
                    firm_id=firm_id,
                    tenant_id=new_tenant,
                    tenant="fabrikam.example",
                    method="connect",
                    granted_at=long_ago,
                    confirmed_at=long_ago,
                )
            )

        async def consent_lost(accounts_revision: int) -> bool:
            failed = RefreshFailed(
                refresh_id=uuid.uuid4(),
                client_id=client_id,
                failure=Failure(kind=FailureKind.CONSENT_MISSING, summary="s", fix="f", occurred_at=datetime.now(UTC)),
                accounts_revision=accounts_revision,
            )
            async with transaction(sessions) as session:
                envelope = new_envelope(failed, firm_id=firm_id, actor=Actor.service("fetcher"))
                await tenant_grants.withdraw_after_consent_lost(session=session, failed=envelope)
            async with sessions() as session:
                grant = await session.get(TenantGrant, (await _grant_id(sessions, firm_id)))
                return grant is not None and grant.revoked_at is not None

        assert not await consent_lost(accounts_revision=0), "the old tenant's refresh revoked the new one's grant"
        assert await consent_lost(accounts_revision=1)
    finally:
        await engine.dispose()


async def _grant_id(sessions: async_sessionmaker[AsyncSession], firm_id: uuid.UUID) -> uuid.UUID:
    async with sessions() as session:
        found: uuid.UUID = (
            await session.execute(select(col(TenantGrant.id)).where(col(TenantGrant.firm_id) == firm_id))
        ).scalar_one()
        return found
