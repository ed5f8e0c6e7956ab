"""Invariant 1 in the registry: a client and its ClientAdded commit together or not at all,
and the relay delivers each event to JetStream exactly once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nats.js import JetStreamContext
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from hub_common import events as events_module
from hub_common import grants
from hub_common.commands import (
    AccountantIdentity,
    AddClient,
    CommandRejected,
    EnsureAccountant,
    GrantTenantAccess,
    ListTenantGrants,
    RejectionReason,
    RemoveClient,
    RevokeTenantAccess,
    WithdrawTenantAccess,
    refused,
)
from hub_common.db import transaction
from hub_common.entra import TenantDirectory
from hub_common.events import (
    Actor,
    ActorKind,
    ClientCard,
    Envelope,
    TenantAccessGranted,
    TenantAccessRevoked,
    decode_event,
)
from hub_common.outbox import OutboxRelay
from hub_common.streams import EVENTS_STREAM
from hub_registry.domain.refresh_schedule import RefreshSchedule
from hub_registry.models import Client, TenantGrant, registry_outbox
from hub_registry.service import clients, firms, refreshes, tenant_grants
from hub_registry.settings import RegistrySettings

SETTINGS = RegistrySettings(_env_file=None, bc_web_client="https://businesscentral.dynamics.com")


def _url(domain: str) -> str:
    return f"https://businesscentral.dynamics.com/{domain}/Production"


@pytest.fixture
def client_url(sandbox_tenant_domains: list[str]) -> str:
    return _url(sandbox_tenant_domains[0])


async def _firm(
    registry_sessions: async_sessionmaker[AsyncSession], directory: TenantDirectory
) -> tuple[uuid.UUID, Actor]:
    async with transaction(registry_sessions) as session:
        identity = await firms.ensure_accountant(
            session=session,
            command=EnsureAccountant(
                email=f"owner{uuid.uuid4().hex[:6]}@firm.example", display_name="O", correlation_id="c"
            ),
            settings=SETTINGS,
            directory=directory,
        )
    return identity.firm_id, Actor(kind=ActorKind.ACCOUNTANT, id=str(identity.accountant_id))


async def _count(session: AsyncSession, what: object) -> int:
    return int((await session.execute(select(func.count()).select_from(what))).scalar_one())  # type: ignore[arg-type]


async def test_client_and_event_commit_together(
    registry_sessions: async_sessionmaker[AsyncSession], tenant_directory: TenantDirectory, client_url: str
) -> None:
    firm_id, actor = await _firm(registry_sessions, tenant_directory)
    command = AddClient(
        firm_id=firm_id,
        actor=actor,
        correlation_id="c1",
        card=ClientCard(name="Contoso", client_url=client_url),
    )
    async with transaction(registry_sessions) as session:
        client_id, granted = await clients.add_client(
            session=session, command=command, settings=SETTINGS, directory=tenant_directory
        )
    assert not granted, "a card added by hand waits for the client's permission"
    async with registry_sessions() as session:
        assert await session.get(Client, client_id) is not None
        payloads = (await session.execute(select(registry_outbox.c.payload))).scalars().all()
    added = [decode_event(p) for p in payloads if '"ClientAdded"' in p]
    assert [e.data.client_id for e in added] == [client_id]  # type: ignore[attr-defined]
    assert added[0].actor == actor and added[0].correlation_id == "c1"


async def test_a_failure_mid_transaction_leaves_neither(
    registry_sessions: async_sessionmaker[AsyncSession], tenant_directory: TenantDirectory, client_url: str
) -> None:
    firm_id, actor = await _firm(registry_sessions, tenant_directory)
    async with registry_sessions() as session:
        clients_before = await _count(session, Client)
        events_before = await _count(session, registry_outbox)
    command = AddClient(
        firm_id=firm_id,
        actor=actor,
        correlation_id="c2",
        card=ClientCard(name="Fabrikam", client_url=client_url),
    )
    with pytest.raises(RuntimeError):
        async with transaction(registry_sessions) as session:
            await clients.add_client(session=session, command=command, settings=SETTINGS, directory=tenant_directory)
            raise RuntimeError("crash after the writes, before the commit")
    async with registry_sessions() as session:
        assert await _count(session, Client) == clients_before
        assert await _count(session, registry_outbox) == events_before


async def test_refusals_store_nothing(
    registry_sessions: async_sessionmaker[AsyncSession], tenant_directory: TenantDirectory, client_url: str
) -> None:
    firm_id, actor = await _firm(registry_sessions, tenant_directory)
    async with registry_sessions() as session:
        events_before = await _count(session, registry_outbox)
    bad_cards = [
        ClientCard(name="Bad URL", client_url="https://example.com/x"),
        ClientCard(name="Bad assignee", client_url=client_url, assigned_accountant_id=uuid.uuid4()),
    ]
    for card in bad_cards:
        with pytest.raises(CommandRejected):
            async with transaction(registry_sessions) as session:
                await clients.add_client(
                    session=session,
                    command=AddClient(firm_id=firm_id, actor=actor, correlation_id="c", card=card),
                    settings=SETTINGS,
                    directory=tenant_directory,
                )
    async with registry_sessions() as session:
        assert await _count(session, registry_outbox) == events_before


async def test_relay_publishes_each_event_once_even_after_a_crash(
    registry_sessions: async_sessionmaker[AsyncSession],
    jetstream: JetStreamContext,
    tenant_directory: TenantDirectory,
    client_url: str,
) -> None:
    firm_id, actor = await _firm(registry_sessions, tenant_directory)
    async with transaction(registry_sessions) as session:
        await clients.add_client(
            session=session,
            command=AddClient(
                firm_id=firm_id,
                actor=actor,
                correlation_id="c3",
                card=ClientCard(name="Northwind", client_url=client_url),
            ),
            settings=SETTINGS,
            directory=tenant_directory,
        )
    relay = OutboxRelay(registry_sessions, registry_outbox, jetstream)
    first_state = await jetstream.stream_info(EVENTS_STREAM)
    sent = await relay.relay_once()
    assert sent >= 3  # FirmCreated, AccountantJoined, ClientAdded
    after_first = await jetstream.stream_info(EVENTS_STREAM)
    assert after_first.state.messages - first_state.state.messages == sent
    # A crash after publishing but before marking: the rows look unsent again.
    async with transaction(registry_sessions) as session:
        await session.execute(update(registry_outbox).values(published_at=None))
    await relay.relay_once()
    after_second = await jetstream.stream_info(EVENTS_STREAM)
    assert after_second.state.messages == after_first.state.messages
    async with registry_sessions() as session:
        unsent = await session.execute(select(func.count()).where(registry_outbox.c.published_at.is_(None)))
        assert unsent.scalar_one() == 0


async def test_the_schedule_asks_a_refresh_of_every_granted_live_client(
    registry_sessions: async_sessionmaker[AsyncSession],
    tenant_directory: TenantDirectory,
    sandbox_tenant_domains: list[str],
) -> None:
    firm_id, actor = await _firm(registry_sessions, tenant_directory)
    urls = [_url(domain) for domain in sandbox_tenant_domains[:3]]
    async with transaction(registry_sessions) as session:
        added = [
            await clients.add_client(
                session=session,
                command=AddClient(
                    firm_id=firm_id, actor=actor, correlation_id="c", card=ClientCard(name=f"C{n}", client_url=url)
                ),
                settings=SETTINGS,
                directory=tenant_directory,
            )
            for n, url in enumerate(urls)
        ]
    ids = [client_id for client_id, _ in added]
    # The client's permission for the first two; the third still waits for it.
    for client_id in ids[:2]:
        async with transaction(registry_sessions) as session:
            client = await session.get(Client, client_id)
            assert client is not None and client.tenant_id is not None
            await tenant_grants.grant_tenant_access(
                session=session,
                command=GrantTenantAccess(
                    firm_id=firm_id,
                    actor=actor,
                    correlation_id="c",
                    client_id=client_id,
                    tenant_id=client.tenant_id,
                    granted_by="admin@client.example",
                ),
            )
    async with transaction(registry_sessions) as session:
        await clients.remove_client(
            session=session, command=RemoveClient(firm_id=firm_id, actor=actor, correlation_id="c", client_id=ids[0])
        )
    async with transaction(registry_sessions) as session:
        await refreshes.refresh_due_clients(
            session=session,
            operator_default=RefreshSchedule(every=timedelta(hours=1), quiet_hours=None),
            now=datetime.now(UTC) + timedelta(hours=2),
            correlation_id="schedule-1",
        )
    async with registry_sessions() as session:
        payloads = (await session.execute(select(registry_outbox.c.payload))).scalars().all()
    scheduled = [decode_event(p) for p in payloads if '"schedule-1"' in p]
    refreshed = {e.data.client_id for e in scheduled if e.firm_id == firm_id}  # type: ignore[attr-defined]
    assert refreshed == {ids[1]}, "removed clients, and clients waiting for permission, are not refreshed"
    assert all(e.type == "RefreshRequested" and e.actor.id == "registry-schedule" for e in scheduled)


async def _signed_up(
    registry_sessions: async_sessionmaker[AsyncSession], directory: TenantDirectory, sample_client_url: str, email: str
) -> AccountantIdentity:
    """A first sign-in of ``email`` on a hub whose sample client is ``sample_client_url``."""
    settings = SETTINGS.model_copy(update={"sample_client_url": sample_client_url})
    command = EnsureAccountant(email=email, display_name="N", correlation_id="c")
    async with transaction(registry_sessions) as session:
        return await firms.ensure_accountant(session=session, command=command, settings=settings, directory=directory)


async def test_the_sample_client_comes_with_a_new_firm_and_once_removed_stays_gone(
    registry_sessions: async_sessionmaker[AsyncSession], tenant_directory: TenantDirectory, client_url: str
) -> None:
    settings = SETTINGS.model_copy(update={"sample_client_url": client_url})
    command = EnsureAccountant(email="newcomer@woodgrove.example", display_name="N", correlation_id="c")
    async with transaction(registry_sessions) as session:
        identity = await firms.ensure_accountant(
            session=session, command=command, settings=settings, directory=tenant_directory
        )
    async with registry_sessions() as session:
        cards = (await session.execute(select(Client).where(Client.firm_id == identity.firm_id))).scalars().all()
    assert [(c.name, c.source) for c in cards] == [("Sample client (CRONUS)", "sample")]
    actor = Actor(kind=ActorKind.ACCOUNTANT, id=str(identity.accountant_id))
    async with transaction(registry_sessions) as session:
        await clients.remove_client(
            session=session,
            command=RemoveClient(firm_id=identity.firm_id, actor=actor, correlation_id="c", client_id=cards[0].id),
        )
    async with transaction(registry_sessions) as session:
        again = await firms.ensure_accountant(
            session=session, command=command, settings=settings, directory=tenant_directory
        )
    assert again.firm_id == identity.firm_id
    assert not again.created
    async with registry_sessions() as session:
        live = (
            (
                await session.execute(
                    select(Client).where(Client.firm_id == identity.firm_id, col(Client.removed_at).is_(None))
                )
            )
            .scalars()
            .all()
        )
    assert live == []


async def test_a_sample_client_refused_after_its_grant_leaves_no_grant_behind(
    registry_sessions: async_sessionmaker[AsyncSession],
    tenant_directory: TenantDirectory,
    client_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sample's grant is written before its card: a card refused then takes the grant
    (and its event) back with it, and the firm is made all the same."""

    async def refused_card(**_: Any) -> None:
        raise refused(RejectionReason.CONFLICT, "This client is already on your dashboard", "client_url")

    monkeypatch.setattr(firms, "insert_client", refused_card)
    identity = await _signed_up(registry_sessions, tenant_directory, client_url, "second.day@woodgrove.example")
    async with registry_sessions() as session:
        grants_left = (
            (await session.execute(select(TenantGrant).where(TenantGrant.firm_id == identity.firm_id))).scalars().all()
        )
        payloads = (await session.execute(select(registry_outbox.c.payload))).scalars().all()
    assert grants_left == []
    events = [decode_event(payload) for payload in payloads]
    assert sorted(e.type for e in events if e.firm_id == identity.firm_id) == ["AccountantJoined", "FirmCreated"]


async def test_the_sample_tenant_lists_no_firm_and_withdraws_none(
    registry_sessions: async_sessionmaker[AsyncSession], tenant_directory: TenantDirectory, client_url: str
) -> None:
    """Every firm holds a grant of the sample tenant: whoever signs in there must not see
    the hub's firms, nor take a firm's sample away."""
    identity = await _signed_up(registry_sessions, tenant_directory, client_url, "sampler@woodgrove.example")
    async with registry_sessions() as session:
        sample = (await session.execute(select(Client).where(Client.firm_id == identity.firm_id))).scalar_one()
    assert sample.tenant_id is not None
    async with registry_sessions() as session:
        listed = await tenant_grants.list_tenant_grants(
            session=session, command=ListTenantGrants(tenant_id=sample.tenant_id, correlation_id="c")
        )
    assert listed.grants == []
    someone = Actor(kind=ActorKind.ACCOUNTANT, id="admin@sample-tenant")
    with pytest.raises(CommandRejected):
        async with transaction(registry_sessions) as session:
            await tenant_grants.withdraw_tenant_access(
                session=session,
                command=WithdrawTenantAccess(
                    tenant_id=sample.tenant_id, firm_id=identity.firm_id, actor=someone, correlation_id="c"
                ),
            )


@pytest.mark.parametrize(
    "sample_client_url",
    [
        "https://businesscentral.dynamics.com/nobody-here.onmicrosoft.com/Production",  # Entra knows no such tenant
        "https://businesscentral.dynamics.com/SignIn",  # no Client URL at all
    ],
)
async def test_a_sample_client_that_cannot_be_added_leaves_the_sign_up_and_the_firm_whole(
    registry_sessions: async_sessionmaker[AsyncSession], tenant_directory: TenantDirectory, sample_client_url: str
) -> None:
    identity = await _signed_up(registry_sessions, tenant_directory, sample_client_url, "first.day@woodgrove.example")
    assert identity.created
    async with registry_sessions() as session:
        cards = (await session.execute(select(Client).where(Client.firm_id == identity.firm_id))).scalars().all()
        payloads = (await session.execute(select(registry_outbox.c.payload))).scalars().all()
    assert cards == []
    events = [decode_event(payload) for payload in payloads]
    assert sorted(e.type for e in events if e.firm_id == identity.firm_id) == ["AccountantJoined", "FirmCreated"]


async def _client_waiting_for_access(
    registry_sessions: async_sessionmaker[AsyncSession], tenant_directory: TenantDirectory, client_url: str
) -> tuple[uuid.UUID, Actor, uuid.UUID, uuid.UUID]:
    """A new firm with a client card on a tenant that has not granted it access yet: the
    firm, its owner, the client and its tenant's id."""
    firm_id, actor = await _firm(registry_sessions, tenant_directory)
    async with transaction(registry_sessions) as session:
        client_id, _ = await clients.add_client(
            session=session,
            command=AddClient(
                firm_id=firm_id, actor=actor, correlation_id="g", card=ClientCard(name="G", client_url=client_url)
            ),
            settings=SETTINGS,
            directory=tenant_directory,
        )
    async with registry_sessions() as session:
        client = await session.get(Client, client_id)
        assert client is not None and client.tenant_id is not None
        return firm_id, actor, client_id, client.tenant_id


class _TwoMinutesAhead(datetime):
    """The clock of a registry replica that runs two minutes ahead."""

    @classmethod
    def now(cls, tz: Any = None) -> Any:
        return datetime.now(tz) + timedelta(minutes=2)


async def test_access_revoked_after_a_grant_by_a_replica_whose_clock_runs_ahead_ends_for_the_fetchers(
    registry_sessions: async_sessionmaker[AsyncSession],
    jetstream: JetStreamContext,
    tenant_directory: TenantDirectory,
    client_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fetchers' copy of a grant keeps the change recorded latest. A grant made by a
    replica two minutes ahead, then revoked within those minutes by another replica: the
    revocation is recorded after the grant, so the fetchers stop reading the tenant. Before,
    it counted as older than the grant, and the fetchers went on reading."""
    firm_id, actor, client_id, tenant_id = await _client_waiting_for_access(
        registry_sessions, tenant_directory, client_url
    )
    grant = GrantTenantAccess(
        firm_id=firm_id, actor=actor, correlation_id="g", client_id=client_id, tenant_id=tenant_id, granted_by="a"
    )
    with monkeypatch.context() as ahead:
        ahead.setattr(tenant_grants, "datetime", _TwoMinutesAhead)
        ahead.setattr(events_module, "datetime", _TwoMinutesAhead)
        async with transaction(registry_sessions) as session:
            await tenant_grants.grant_tenant_access(session=session, command=grant)
    async with transaction(registry_sessions) as session:
        await tenant_grants.revoke_tenant_access(
            session=session,
            command=RevokeTenantAccess(firm_id=firm_id, actor=actor, correlation_id="r", client_id=client_id),
        )

    async def mirror(envelope: Envelope[Any]) -> None:
        if isinstance(envelope.data, TenantAccessGranted | TenantAccessRevoked):
            await grants.record_access(jetstream, envelope)

    await OutboxRelay(registry_sessions, registry_outbox, jetstream, before_publish=mirror).relay_once()
    assert not await grants.has_access(jetstream, firm_id, tenant_id), "the fetchers still read the tenant"
    async with registry_sessions() as session:
        [row] = (await session.execute(select(TenantGrant).where(TenantGrant.tenant_id == tenant_id))).scalars().all()
    assert row.revoked_at is not None and row.revoked_at > row.granted_at


async def test_the_relay_mirrors_a_grant_before_anything_after_it_leaves(
    registry_sessions: async_sessionmaker[AsyncSession],
    jetstream: JetStreamContext,
    tenant_directory: TenantDirectory,
    client_url: str,
) -> None:
    """A refresh committed after a grant reaches the stream only once the grant is in the
    fetchers' bucket; while the bucket cannot be written, nothing after the grant leaves."""
    firm_id, actor, client_id, tenant_id = await _client_waiting_for_access(
        registry_sessions, tenant_directory, client_url
    )
    await OutboxRelay(registry_sessions, registry_outbox, jetstream).relay_once()  # what came before the grant
    before = (await jetstream.stream_info(EVENTS_STREAM)).state.messages
    async with transaction(registry_sessions) as session:
        await tenant_grants.grant_tenant_access(
            session=session,
            command=GrantTenantAccess(
                firm_id=firm_id,
                actor=actor,
                correlation_id="g",
                client_id=client_id,
                tenant_id=tenant_id,
                granted_by="admin@client.example",
            ),
        )

    async def broken_bucket(envelope: Envelope[Any]) -> None:
        if isinstance(envelope.data, TenantAccessGranted):
            raise RuntimeError("the bucket does not answer")

    stuck = OutboxRelay(registry_sessions, registry_outbox, jetstream, before_publish=broken_bucket)
    with pytest.raises(RuntimeError):
        await stuck.relay_once()
    assert not await grants.has_access(jetstream, firm_id, tenant_id)
    assert (await jetstream.stream_info(EVENTS_STREAM)).state.messages == before, "the refresh waited"

    async def mirror(envelope: Envelope[Any]) -> None:
        if isinstance(envelope.data, TenantAccessGranted):
            await grants.record_access(jetstream, envelope)

    await OutboxRelay(registry_sessions, registry_outbox, jetstream, before_publish=mirror).relay_once()
    assert await grants.has_access(jetstream, firm_id, tenant_id)
    assert not await grants.has_access(jetstream, uuid.uuid4(), tenant_id), "the grant is this firm's only"
    after = (await jetstream.stream_info(EVENTS_STREAM)).state.messages
    assert after - before == 2, "the grant, then the refresh it allowed"
