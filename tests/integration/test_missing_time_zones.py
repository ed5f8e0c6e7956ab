"""Giving the cards without a time zone one, on a real database: a share per answer, cards
saved under older rules named rather than lost, cards with a zone and other firms' cards
untouched."""

from __future__ import annotations

import asyncio
import uuid

from sqlmodel import col, select

from hub_common.commands import CardToSaveAgain, MissingTimeZonesSet, SetMissingTimeZones
from hub_common.db import create_engine, migrate, session_factory, transaction
from hub_common.events import Actor, ActorKind, ClientUpdated, decode_event
from hub_registry.app import MIGRATIONS, VERSION_TABLE
from hub_registry.models import Client, Firm, registry_outbox
from hub_registry.service import clients

ACTOR = Actor(kind=ActorKind.ACCOUNTANT, id=str(uuid.uuid4()))


def _client(firm_id: uuid.UUID, index: int, **fields: object) -> Client:
    values: dict[str, object] = {
        "firm_id": firm_id,
        "name": f"Client {index}",
        "client_url": f"https://businesscentral.dynamics.com/t{index}.example/Production",
        "tenant": f"t{index}.example",
        "tenant_id": uuid.uuid4(),
        "environment": "Production",
        "source": "manual",
        **fields,
    }
    return Client.model_validate(values)


async def test_cards_without_a_zone_take_it_a_share_at_a_time_and_old_cards_are_named(database_url: str) -> None:
    await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE)
    engine = create_engine(database_url)
    firm, neighbour = Firm(name="Zoned firm"), Firm(name="Neighbour")
    try:
        sessions = session_factory(engine)
        async with transaction(sessions) as session:
            session.add_all([firm, neighbour])
            await session.flush()
            without = [_client(firm.id, index) for index in range(3)]
            # Saved before names were limited to one line: no ClientUpdated may carry it as it is.
            old_card = _client(firm.id, 3, name="Two\nlines")
            zoned = _client(firm.id, 4, time_zone="Pacific/Auckland")
            removed = _client(firm.id, 5)
            theirs = _client(neighbour.id, 6)
            session.add_all([*without, old_card, zoned, removed, theirs])
            await session.flush()
            removed.removed_at = removed.created_at

        command = SetMissingTimeZones(
            firm_id=firm.id, actor=ACTOR, correlation_id="zones", time_zone="Europe/Amsterdam"
        )
        answers: list[MissingTimeZonesSet] = []
        for _ in range(3):
            async with transaction(sessions) as session:
                answers.append(await clients.set_missing_time_zones(session=session, command=command, per_answer=2))
        again = [CardToSaveAgain(client_id=old_card.id, name="Two\nlines")]
        assert answers == [
            MissingTimeZonesSet(clients=2, remaining=1, to_save_again=again),
            MissingTimeZonesSet(clients=1, remaining=0, to_save_again=again),
            MissingTimeZonesSet(clients=0, remaining=0, to_save_again=again),
        ]

        async with sessions() as session:
            zones: dict[uuid.UUID, str | None] = {
                client_id: zone for client_id, zone in (await session.execute(select(Client.id, Client.time_zone)))
            }
            payloads = (
                (await session.execute(select(registry_outbox.c.payload).order_by(col(registry_outbox.c.position))))
                .scalars()
                .all()
            )
    finally:
        await engine.dispose()
    assert {client.id: zones[client.id] for client in without} == dict.fromkeys(
        (client.id for client in without), "Europe/Amsterdam"
    )
    assert (zones[old_card.id], zones[zoned.id], zones[removed.id], zones[theirs.id]) == (
        None,
        "Pacific/Auckland",
        None,
        None,
    )
    events = [decode_event(payload) for payload in payloads]
    assert sorted(e.data.client_id for e in events if isinstance(e.data, ClientUpdated)) == sorted(
        client.id for client in without
    )
    assert {(e.firm_id, e.actor) for e in events} == {(firm.id, ACTOR)}
