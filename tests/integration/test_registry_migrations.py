"""A registry database from before tenant grants: migration 0004 keeps the access that
accepted invitations and the sample client had (a grant and its event each), leaves cards
added by hand waiting for the client's permission, and the registry resolves their tenants."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text
from sqlmodel import select

from hub_common.db import create_engine, migrate, session_factory, transaction
from hub_common.entra import TenantDirectory
from hub_common.events import ClientUpdated, TenantAccessGranted, decode_event
from hub_registry.app import MIGRATIONS, VERSION_TABLE
from hub_registry.models import Client, TenantGrant, registry_outbox
from hub_registry.service import clients, tenant_grants


async def test_old_clients_keep_the_access_they_had(
    database_url: str, tenant_directory: TenantDirectory, sandbox_tenant_domains: list[str]
) -> None:
    await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE, "0003")
    firm, invited, sample, by_hand = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    invited_tenant = uuid.uuid4()
    domain = sandbox_tenant_domains[0]
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO registry_firms (id, name, sample_client_removed, created_at)"
                     " VALUES (:id, 'Old firm', false, '2026-11-01 10:00:00')"),
                {"id": firm.hex},
            )  # fmt: skip
            for client, tenant, source in (
                (invited, str(invited_tenant), "invitation"),
                (sample, str(uuid.uuid4()), "sample"),
                (by_hand, domain, "manual"),
            ):
                await connection.execute(
                    text(
                        "INSERT INTO registry_clients (id, firm_id, name, client_url, tenant, environment, source,"
                        " created_at, updated_at) VALUES (:id, :firm, :name, :url, :tenant, 'Production', :source,"
                        " '2026-11-01 10:00:00', '2026-11-01 10:00:00')"
                    ),
                    {
                        "id": client.hex,
                        "firm": firm.hex,
                        "name": f"Client {source}",
                        "url": f"https://businesscentral.dynamics.com/{tenant}/Production",
                        "tenant": tenant,
                        "source": source,
                    },
                )
        await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE)

        sessions = session_factory(engine)
        async with sessions() as session:
            grants = (await session.execute(select(TenantGrant))).scalars().all()
            cards = {c.id: c for c in (await session.execute(select(Client))).scalars()}
            payloads = (await session.execute(select(registry_outbox.c.payload))).scalars().all()
        assert sorted(g.method for g in grants) == ["invitation", "sample"]
        assert {g.tenant_id for g in grants if g.method == "invitation"} == {invited_tenant}
        assert cards[invited].tenant_id == invited_tenant
        assert cards[by_hand].tenant_id is None, "a domain needs Entra to be resolved"
        granted = [decode_event(p) for p in payloads]
        assert {e.data.tenant_id for e in granted if isinstance(e.data, TenantAccessGranted)} == {
            g.tenant_id for g in grants
        }
        assert all(e.firm_id == firm for e in granted)

        async with transaction(sessions) as session:
            assert await clients.resolve_missing_tenant_ids(session=session, directory=tenant_directory) == 1
        async with sessions() as session:
            resolved = await session.get(Client, by_hand)
            payloads = (await session.execute(select(registry_outbox.c.payload))).scalars().all()
        assert resolved is not None and resolved.tenant_id == await tenant_directory.resolve(domain)
        updates = [decode_event(p) for p in payloads if '"ClientUpdated"' in p]
        assert [u.data.client_id for u in updates if isinstance(u.data, ClientUpdated)] == [by_hand]
        async with sessions() as session:
            assert not await tenant_grants.has_grant(session, firm, resolved.tenant_id), "still waiting for permission"
    finally:
        await engine.dispose()
