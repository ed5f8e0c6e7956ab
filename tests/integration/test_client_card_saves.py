"""Saving a client card in the registry: Entra is asked about the card's tenant only when the
card names it otherwise than before (a real directory, pointed where nothing answers)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from hub_common import commands
from hub_common.commands import CommandRejected, RejectionReason, SetMissingTimeZones, UpdateClient
from hub_common.db import create_engine, migrate, session_factory, transaction
from hub_common.entra import TenantDirectory
from hub_common.events import Actor, ActorKind, ClientCard, ClientUpdated, decode_event
from hub_common.local_nats import free_port
from hub_registry.app import MIGRATIONS, VERSION_TABLE
from hub_registry.models import Accountant, Client, ConnectionTestAsked, Firm, registry_outbox
from hub_registry.service import clients
from hub_registry.settings import RegistrySettings
from tests.conftest import POSTGRESQL_ONLY, Sandbox

SETTINGS = RegistrySettings(secret_key=SecretStr("integration-secret-key-long-enough-for-sealing"))
URL = "https://businesscentral.dynamics.com/contoso.example/Production"


@pytest.fixture
async def saved_card(database_url: str) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], UpdateClient]]:
    await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE)
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    firm_id, owner, client_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with transaction(sessions) as session:
        session.add(Firm(id=firm_id, name="Saving firm"))
        await session.flush()
        session.add(Accountant(id=owner, firm_id=firm_id, email="o@saving.example", display_name="O", role="owner"))
        session.add(
            Client(
                id=client_id,
                firm_id=firm_id,
                name="Contoso",
                client_url=URL,
                tenant="contoso.example",
                tenant_id=uuid.uuid4(),
                environment="Production",
                source="manual",
            )
        )
    command = UpdateClient(
        firm_id=firm_id,
        actor=Actor(kind=ActorKind.ACCOUNTANT, id=str(owner)),
        correlation_id="save",
        client_id=client_id,
        card=ClientCard(name="Contoso", client_url=URL, notes="Year end in March"),
    )
    try:
        yield sessions, command
    finally:
        await engine.dispose()


async def test_a_card_naming_its_tenant_as_before_is_saved_while_entra_is_away(
    saved_card: tuple[async_sessionmaker[AsyncSession], UpdateClient],
) -> None:
    """Notes, an assignee or a time zone: before, every save asked Entra again once its answer
    was an hour old, so it failed while Entra was away and took one of the firm's lookups."""
    sessions, command = saved_card
    async with httpx.AsyncClient() as http:
        nowhere = TenantDirectory(authority_base=f"https://127.0.0.1:{free_port()}", http=http, timeout_seconds=2)
        await _save(sessions, command, nowhere, URL)
        await _save(sessions, command, nowhere, URL.replace("contoso.example", "CONTOSO.example"))  # Entra's spelling
        # Another tenant is asked about, and cannot be saved without Entra's answer.
        with pytest.raises(CommandRejected) as refused:
            await _save(sessions, command, nowhere, URL.replace("contoso.example", "fabrikam.example"))
    assert refused.value.rejection.reason is RejectionReason.UNAVAILABLE


async def _save(
    sessions: async_sessionmaker[AsyncSession], command: UpdateClient, directory: TenantDirectory, client_url: str
) -> None:
    """The card saved with ``client_url``, as the registry answers an UpdateClient."""
    card = command.card.model_copy(update={"client_url": client_url})
    async with transaction(sessions) as session:
        await clients.update_client(
            session=session, command=command.model_copy(update={"card": card}), settings=SETTINGS, directory=directory
        )


async def test_the_first_save_of_a_card_without_a_tenant_id_is_no_move(
    saved_card: tuple[async_sessionmaker[AsyncSession], UpdateClient], sandbox: Sandbox
) -> None:
    """Cards named by domain before tenants were resolved have no tenant id: their first
    save resolved one, took the card for moved, ended its alerts and read it again."""
    sessions, command = saved_card
    sample = "https://businesscentral.dynamics.com/cronus-sample.onmicrosoft.com/Production"
    async with transaction(sessions) as session:
        await session.execute(
            update(Client).values(tenant_id=None, tenant="cronus-sample.onmicrosoft.com", client_url=sample)
        )
    async with httpx.AsyncClient(verify=sandbox.tls()) as http:
        directory = TenantDirectory(authority_base=sandbox.base_url, http=http, timeout_seconds=10)
        await _save(sessions, command, directory, sample)
    async with sessions() as session:
        events = (await session.execute(select(registry_outbox.c.payload))).scalars().all()
    assert [decode_event(payload).data.event_type for payload in events] == ["ClientUpdated"]


async def test_every_update_of_a_moved_card_says_where_it_last_moved(
    saved_card: tuple[async_sessionmaker[AsyncSession], UpdateClient],
) -> None:
    """A time zone given to every card is an update too: without the card's move revision, a
    read model that applied it before the move never learnt of the move."""
    sessions, command = saved_card
    async with transaction(sessions) as session:
        await session.execute(update(Client).values(accounts_revision=3, moved_revision=3, time_zone=None))
    async with transaction(sessions) as session:
        await clients.set_missing_time_zones(
            session=session,
            command=SetMissingTimeZones(
                firm_id=command.firm_id, actor=command.actor, correlation_id="zones", time_zone="Europe/Amsterdam"
            ),
        )
    async with sessions() as session:
        payloads = (await session.execute(select(registry_outbox.c.payload))).scalars().all()
    [updated] = [decode_event(payload).data for payload in payloads]
    assert isinstance(updated, ClientUpdated) and updated.moved_revision == 3


async def test_a_firm_testing_client_urls_in_a_loop_is_stopped_at_its_allowance(
    saved_card: tuple[async_sessionmaker[AsyncSession], UpdateClient], tenant_directory: TenantDirectory
) -> None:
    """Each Test Client URL makes a fetcher read the client's BC, within limits every firm
    reading that tenant shares, and keeps two events for good: a firm gets its allowance
    for the hour and then a 429 saying when to try again; another firm is not affected."""
    sessions, command = saved_card
    limited = SETTINGS.model_copy(update={"connection_tests_per_firm_per_hour": 3})
    sample = "https://businesscentral.dynamics.com/cronus-sample.onmicrosoft.com/Production"

    async def test(firm_id: uuid.UUID) -> uuid.UUID:
        async with transaction(sessions) as session:
            return await clients.test_connection(
                session=session,
                command=commands.TestConnection(
                    firm_id=firm_id, actor=command.actor, correlation_id="test", client_id=None, client_url=sample
                ),
                settings=limited,
                directory=tenant_directory,
            )

    for _ in range(3):
        await test(command.firm_id)
    with pytest.raises(CommandRejected) as refused:
        await test(command.firm_id)
    assert refused.value.rejection.reason is RejectionReason.RATE_LIMITED
    assert refused.value.rejection.message == (
        "Your firm tested 3 Client URLs in the last hour, the most the hub tests for one firm; try again in 60 minutes."
    )
    await test(uuid.uuid4())  # another firm's allowance is its own
    # An hour later the oldest no longer counts.
    async with transaction(sessions) as session:
        await session.execute(
            update(ConnectionTestAsked)
            .where(col(ConnectionTestAsked.firm_id) == command.firm_id)
            .values(requested_at=datetime.now(UTC) - timedelta(minutes=61))
        )
    await test(command.firm_id)


@pytest.mark.parametrize("database_url", POSTGRESQL_ONLY, indirect=True)
async def test_cards_for_one_environment_added_at_once_make_one_client(
    saved_card: tuple[async_sessionmaker[AsyncSession], UpdateClient], tenant_directory: TenantDirectory
) -> None:
    """Five adds at the same moment name one environment in five spellings of its case
    (as BC reads it, one environment): one card is added, the others are refused as a
    clash. Each add found no clash before the others committed, and the unique indexes
    compare the names as written, so all five were added."""
    sessions, command = saved_card
    spellings = ("Production", "production", "PRODUCTION", "pRoduction", "productioN")

    async def add(environment: str) -> uuid.UUID | CommandRejected:
        url = f"https://businesscentral.dynamics.com/cronus-sample.onmicrosoft.com/{environment}"
        try:
            async with transaction(sessions) as session:
                added, _ = await clients.add_client(
                    session=session,
                    command=commands.AddClient(
                        firm_id=command.firm_id,
                        actor=command.actor,
                        correlation_id=f"add-{environment}",
                        card=ClientCard(name=f"CRONUS {environment}", client_url=url),
                    ),
                    settings=SETTINGS,
                    directory=tenant_directory,
                )
                return added
        except CommandRejected as rejected:
            return rejected

    # Entra known to answer at once, as for a tenant asked about lately: the adds meet.
    await tenant_directory.resolve("cronus-sample.onmicrosoft.com", firm_id=command.firm_id)
    outcomes = await asyncio.gather(*(add(environment) for environment in spellings))
    added = [outcome for outcome in outcomes if isinstance(outcome, uuid.UUID)]
    refusals = [outcome for outcome in outcomes if isinstance(outcome, CommandRejected)]
    assert len(added) == 1 and len(refusals) == 4, outcomes
    assert all(refusal.rejection.reason is RejectionReason.CONFLICT for refusal in refusals)


async def test_a_save_made_on_a_card_saved_since_is_refused(
    saved_card: tuple[async_sessionmaker[AsyncSession], UpdateClient],
) -> None:
    """Two people open the card at revision 1 and save within the moment the dashboard's
    read model still shows it: the second save is refused instead of undoing the first
    (the registry took every save whole). A save that names no revision is taken."""
    sessions, command = saved_card
    async with httpx.AsyncClient() as http:
        nowhere = TenantDirectory(authority_base=f"https://127.0.0.1:{free_port()}", http=http, timeout_seconds=2)
        async with transaction(sessions) as session:
            await session.execute(update(Client).values(card_revision=1))
        first = command.model_copy(update={"expected_card_revision": 1})
        await _save(sessions, first, nowhere, URL)
        second = command.model_copy(
            update={"expected_card_revision": 1, "card": command.card.model_copy(update={"notes": "Phone: 555"})}
        )
        with pytest.raises(CommandRejected) as refused:
            await _save(sessions, second, nowhere, URL)
        assert refused.value.rejection.reason is RejectionReason.PRECONDITION_FAILED
        await _save(sessions, second.model_copy(update={"expected_card_revision": 2}), nowhere, URL)
        await _save(sessions, command, nowhere, URL)
    async with sessions() as session:
        saved = (await session.execute(select(Client).where(col(Client.id) == command.client_id))).scalar_one()
    assert saved.card_revision == 4
    events = await _outbox_events(sessions)
    assert [e.card_revision for e in events if isinstance(e, ClientUpdated)] == [2, 3, 4]


async def _outbox_events(sessions: async_sessionmaker[AsyncSession]) -> list[object]:
    async with sessions() as session:
        payloads = (await session.execute(select(registry_outbox.c.payload))).scalars().all()
    return [decode_event(payload).data for payload in payloads]
