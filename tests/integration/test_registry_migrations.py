"""A registry database from before tenant grants: migration 0004 keeps the access that
accepted invitations and the sample client had (a grant and its event each), leaves cards
added by hand waiting for the client's permission, and the registry resolves their tenants.
Migration 0010 keeps the alerts waiting for a digest and drops failures nothing watches."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import select

from hub_common.db import UtcDateTime, create_engine, migrate, session_factory, sync_url, transaction
from hub_common.entra import TenantDirectory
from hub_common.events import ClientUpdated, TenantAccessGranted, decode_event
from hub_registry.app import MIGRATIONS, VERSION_TABLE
from hub_registry.models import (
    AlertEpisodeRow,
    AlertFailureRow,
    AlertRuleRow,
    Client,
    Firm,
    TenantGrant,
    registry_outbox,
)
from hub_registry.service import clients, tenant_grants
from tests.support.registry_rows import insert_old_firm


async def test_old_clients_keep_the_access_they_had(
    database_url: str, tenant_directory: TenantDirectory, sandbox_tenant_domains: list[str]
) -> None:
    await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE, "0003")
    firm, invited, sample, by_hand, old_card = (uuid.uuid4() for _ in range(5))
    invited_tenant = uuid.uuid4()
    domain = sandbox_tenant_domains[0]
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await insert_old_firm(connection, firm)
            for client, tenant, source, name in (
                (invited, str(invited_tenant), "invitation", "Client invitation"),
                (sample, str(uuid.uuid4()), "sample", "Client sample"),
                (by_hand, domain, "manual", "Client manual"),
                # Saved before names were held to one line: no ClientUpdated may carry it.
                (old_card, sandbox_tenant_domains[1], "manual", "Old\ncard"),
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
                        "name": name,
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
            unresolved = await session.get(Client, old_card)
            payloads = (await session.execute(select(registry_outbox.c.payload))).scalars().all()
        assert resolved is not None and resolved.tenant_id == await tenant_directory.resolve(domain)
        assert unresolved is not None and unresolved.tenant_id is None, "its own save resolves it"
        updates = [decode_event(p) for p in payloads if '"ClientUpdated"' in p]
        assert [u.data.client_id for u in updates if isinstance(u.data, ClientUpdated)] == [by_hand]
        async with sessions() as session:
            assert not await tenant_grants.has_grant(session, firm, resolved.tenant_id), "still waiting for permission"
    finally:
        await engine.dispose()


async def test_alerts_waiting_for_a_digest_stay_waiting_and_unwatched_failures_go(database_url: str) -> None:
    """Migration 0010: the episodes the old digest window would list next are flagged as
    waiting for the digest (the rest are not), and a failure row of a client no "failing
    for more than" rule watches (never cleared by a success before) is dropped."""
    await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE, "0009")
    firm, owner, watched, unwatched = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    last_digest = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    engine = create_engine(database_url)
    try:
        sessions = session_factory(engine)
        async with transaction(sessions) as session:
            session.add(Firm(id=firm, name="Digesting firm"))
            await session.flush()
            # Raw SQL: the Accountant and Client models have columns of later revisions.
            await session.execute(
                text(
                    "INSERT INTO registry_accountants (id, firm_id, email, display_name, role, created_at)"
                    " VALUES (:id, :firm, :email, 'D', 'owner', '2026-11-01 10:00:00')"
                ),
                {"id": owner.hex, "firm": firm.hex, "email": f"{owner.hex}@d.example"},
            )
            for client_id in (watched, unwatched):
                await session.execute(
                    text(
                        "INSERT INTO registry_clients (id, firm_id, name, client_url, tenant, environment, source,"
                        " created_at, updated_at) VALUES (:id, :firm, 'Client', :url, :tenant, 'Production',"
                        " 'manual', '2026-11-01 10:00:00', '2026-11-01 10:00:00')"
                    ),
                    {
                        "id": client_id.hex,
                        "firm": firm.hex,
                        "url": f"https://businesscentral.dynamics.com/{client_id.hex}.example/Production",
                        "tenant": f"{client_id.hex}.example",
                    },
                )
            await session.flush()
            # The rule table's columns of revision 0009 only (the model has later ones).
            digest_id, failing_id = uuid.uuid4(), uuid.uuid4()
            rule = {"firm_id": firm, "owner_accountant_id": owner, "client_id": watched, "email": True}
            rule |= {"time_zone": "UTC", "language": "en", "created_at": last_digest, "updated_at": last_digest}
            for values in (
                {"id": digest_id, "name": "Digest", "figure": "cash", "comparison": "below", "threshold": "1"}
                | {"delivery": "daily_digest", "digest_at": time(8, 0), "last_digest_at": last_digest},
                {"id": failing_id, "name": "Failing", "figure": "failing_hours", "comparison": "above"}
                | {"threshold": "6", "delivery": "immediate", "last_digest_at": last_digest},
            ):
                await session.execute(sa.insert(AlertRuleRow.__table__).values(**rule, **values))  # type: ignore[attr-defined]
            for client_id in (watched, unwatched):
                session.add(
                    AlertFailureRow(client_id=client_id, company_key="client", firm_id=firm, failing_since=last_digest)
                )
        episodes = sa.table(
            "registry_alert_episodes",
            *(sa.column(name, sa.Uuid()) for name in ("id", "firm_id", "rule_id", "client_id", "raised_event_id")),
            sa.column("company_key", sa.String()),
            sa.column("value", sa.String()),
            sa.column("started_at", UtcDateTime()),
            sa.column("ended_at", UtcDateTime()),
        )
        listed, waiting = uuid.uuid4(), uuid.uuid4()
        async with engine.begin() as connection:
            for episode_id, started_at in (
                (listed, last_digest - timedelta(hours=2)),
                (waiting, last_digest + timedelta(hours=2)),
            ):
                await connection.execute(
                    sa.insert(episodes).values(
                        id=episode_id,
                        firm_id=firm,
                        rule_id=digest_id,
                        client_id=watched,
                        raised_event_id=uuid.uuid4(),
                        company_key="client",
                        value="0",
                        started_at=started_at,
                        ended_at=started_at + timedelta(hours=1),
                    )
                )
        await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE)

        async with sessions() as session:
            pending = {e.id: e.digest_pending for e in (await session.execute(select(AlertEpisodeRow))).scalars()}
            failures = {f.client_id for f in (await session.execute(select(AlertFailureRow))).scalars()}
        assert pending == {listed: False, waiting: True}
        assert failures == {watched}
    finally:
        await engine.dispose()


def test_a_url_with_a_percent_sign_migrates_and_keeps_its_password_out_of_errors(database_url: str) -> None:
    """A password's "@" is written "%40" in the URL (deploy/README); alembic's options are a
    ConfigParser, which read the "%" as interpolation: every service failed at start and
    printed the URL, password and all. A file path with a "%" did the same on SQLite."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        folder = Path(url.database).parent / "100%40 sure"
        url = url.set(database=str(folder / "registry.db"))
    elif url.password is None:
        # This server signs in without a password (trust), so any will do.
        url = url.set(password="S3cr@t/%-pw")
    migrate(url.render_as_string(hide_password=False), MIGRATIONS, VERSION_TABLE)
    engine = sa.create_engine(sync_url(url.render_as_string(hide_password=False)))
    try:
        assert sa.inspect(engine).has_table(VERSION_TABLE)
        assert sa.inspect(engine).has_table("registry_clients")
    finally:
        engine.dispose()
