"""Refreshes asked for by hand, in the registry on a real database: a client or company
whose refresh still awaits its outcome (a slow or throttled tenant the fetchers wait to
retry) is not asked for again, so no firm fills the fetchers' shared queue by asking in a
loop; its outcome, or three hours, ends the wait."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from hub_common.commands import CommandRejected, RejectionReason, RequestRefresh
from hub_common.db import create_engine, session_factory, transaction
from hub_common.events import (
    Actor,
    ActorKind,
    CompaniesDiscovered,
    DiscoveredCompany,
    Failure,
    FailureKind,
    RefreshFailed,
)
from hub_registry.models import Client, ManualRefresh
from hub_registry.service import refresh_outcomes, refreshes
from tests.conftest import POSTGRESQL_ONLY
from tests.integration.test_dashboard_model import _snapshot
from tests.integration.test_refresh_schedule import _firm_with_clients


async def _ask(
    database_url: str,
    firm: uuid.UUID,
    owner: uuid.UUID,
    client: uuid.UUID | None = None,
    company: uuid.UUID | None = None,
    *,
    awaited_per_firm: int = refreshes.MANUAL_AWAITED_PER_FIRM,
) -> refreshes.RefreshesAsked:
    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            command = RequestRefresh(
                firm_id=firm,
                actor=Actor(kind=ActorKind.ACCOUNTANT, id=str(owner)),
                correlation_id=f"run-{uuid.uuid4()}",
                client_id=client,
                company_id=company,
            )
            return await refreshes.request_refresh(session=session, command=command, awaited_per_firm=awaited_per_firm)
    finally:
        await engine.dispose()


async def _arrived(database_url: str, outcome: object) -> None:
    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            await refresh_outcomes.outcome_arrived(session=session, outcome=outcome)  # type: ignore[arg-type]
    finally:
        await engine.dispose()


async def test_a_client_whose_refresh_awaits_its_outcome_is_not_asked_again_until_it_arrives(
    database_url: str,
) -> None:
    firm, owner, clients = await _firm_with_clients(database_url, 2)
    first = await _ask(database_url, firm, owner)
    assert len(first.started) == 2 and first.on_their_way == []
    # Asked again at once, every client, one client, or one company of it: nothing new.
    again = await _ask(database_url, firm, owner)
    assert again.started == [] and sorted(again.on_their_way) == sorted(first.started)
    one = await _ask(database_url, firm, owner, client=clients[0])
    company = await _ask(database_url, firm, owner, client=clients[0], company=uuid.uuid4())
    assert one.started == company.started == [] and one.on_their_way == company.on_their_way
    waited = one.on_their_way[0]
    # Its list of companies alone does not end the wait (their reads may wait for a retry);
    # another refresh's outcome neither; a company read does.
    listed = CompaniesDiscovered(
        client_id=clients[0], refresh_id=waited, companies=[DiscoveredCompany(company_id=uuid.uuid4(), name="A")]
    )
    await _arrived(database_url, listed)
    await _arrived(database_url, _snapshot(clients[0], uuid.uuid4(), "A", "1.00", 0, uuid.uuid4()))
    assert (await _ask(database_url, firm, owner, client=clients[0])).started == []
    await _arrived(database_url, _snapshot(clients[0], uuid.uuid4(), "A", "1.00", 0, waited))
    after = await _ask(database_url, firm, owner)
    assert len(after.started) == 1 and after.on_their_way == [r for r in first.started if r != waited]
    # The client failing as a whole is an outcome too.
    failed = RefreshFailed(
        client_id=clients[1],
        refresh_id=after.on_their_way[0],
        failure=Failure(
            kind=FailureKind.ENVIRONMENT_OFFLINE, summary="offline", fix="wait", occurred_at=datetime.now(UTC)
        ),
    )
    await _arrived(database_url, failed)
    assert len((await _ask(database_url, firm, owner, client=clients[1])).started) == 1


async def test_a_company_refresh_waits_for_its_companys_outcome_only(database_url: str) -> None:
    firm, owner, clients = await _firm_with_clients(database_url, 1)
    company, other = uuid.uuid4(), uuid.uuid4()
    [asked] = (await _ask(database_url, firm, owner, client=clients[0], company=company)).started
    # Another company of the client is asked for as usual, and so is the whole client.
    assert len((await _ask(database_url, firm, owner, client=clients[0], company=other)).started) == 1
    assert len((await _ask(database_url, firm, owner, client=clients[0])).started) == 1
    assert (await _ask(database_url, firm, owner, client=clients[0], company=company)).on_their_way == [asked]
    # Gone from the client's BC: its one-company refresh lists the others, no snapshot comes.
    gone = CompaniesDiscovered(
        client_id=clients[0],
        refresh_id=asked,
        companies=[DiscoveredCompany(company_id=other, name="B")],
        refresh_company_id=company,
    )
    await _arrived(database_url, gone)
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            row = await session.get(ManualRefresh, (clients[0], str(company)))
            assert row is not None and row.awaiting_refresh_id is None
    finally:
        await engine.dispose()


async def test_an_outcome_never_seen_is_waited_for_three_hours_at_most(database_url: str) -> None:
    firm, owner, clients = await _firm_with_clients(database_url, 1)
    await _ask(database_url, firm, owner, client=clients[0])
    engine = create_engine(database_url)
    try:
        for asked_at, asked_again in (
            (datetime.now(UTC) - timedelta(hours=2, minutes=59), False),
            (datetime.now(UTC) - timedelta(hours=3, seconds=1), True),
            # Stamped by a replica whose clock ran a day ahead: not a wait of a day more.
            (datetime.now(UTC) + timedelta(days=1), True),
        ):
            async with transaction(session_factory(engine)) as session:
                await session.execute(
                    update(ManualRefresh)
                    .where(ManualRefresh.client_id == clients[0])  # type: ignore[arg-type]
                    .values(requested_at=asked_at)
                )
            assert bool((await _ask(database_url, firm, owner, client=clients[0])).started) is asked_again
    finally:
        await engine.dispose()


async def test_a_card_whose_account_numbers_changed_since_is_asked_anew(database_url: str) -> None:
    """The refresh on its way reads the card's old account numbers: asked again after they
    changed, the client is refreshed anew, so the new numbers show."""
    firm, owner, clients = await _firm_with_clients(database_url, 1)
    [first] = (await _ask(database_url, firm, owner, client=clients[0])).started
    assert (await _ask(database_url, firm, owner, client=clients[0])).on_their_way == [first]
    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            await session.execute(
                update(Client).where(Client.id == clients[0]).values(accounts_revision=Client.accounts_revision + 1)  # type: ignore[arg-type]
            )
    finally:
        await engine.dispose()
    assert len((await _ask(database_url, firm, owner, client=clients[0])).started) == 1


@pytest.mark.parametrize("database_url", POSTGRESQL_ONLY, indirect=True)
async def test_refresh_all_asked_at_once_from_several_replicas_asks_each_client_once(database_url: str) -> None:
    firm, owner, clients = await _firm_with_clients(database_url, 3)
    answers = await asyncio.gather(*(_ask(database_url, firm, owner) for _ in range(4)))
    assert sum(len(answer.started) for answer in answers) == len(clients), answers


async def test_a_firm_has_at_most_so_many_refreshes_by_hand_on_their_way(database_url: str) -> None:
    """Every firm shares the fetchers' queue in the order asked: "refresh all" of a firm with
    thousands of clients must not put them all ahead of every other firm's refreshes. Beyond
    the firm's most, refresh all leaves the rest (the least recently asked go first, so asking
    again goes on with the others) and a refresh of one client is refused."""
    firm, owner, clients = await _firm_with_clients(database_url, 5)
    first = await _ask(database_url, firm, owner, awaited_per_firm=3)
    assert (len(first.started), first.not_started) == (3, 2)
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            asked = list((await session.execute(select(ManualRefresh).where(ManualRefresh.firm_id == firm))).scalars())
        left_out = set(clients) - {row.client_id for row in asked}
        assert len(left_out) == 2
        # One of those left out, asked for alone: refused while the firm's three wait.
        with pytest.raises(CommandRejected) as refused:
            await _ask(database_url, firm, owner, client=sorted(left_out)[0], awaited_per_firm=3)
        assert refused.value.rejection.reason == RejectionReason.RATE_LIMITED
        assert "3 refreshes on their way" in refused.value.rejection.message
        # Two come through; asking again starts the two left out, not those asked a moment ago.
        async with transaction(session_factory(engine)) as session:
            for row in asked[:2]:
                await session.execute(
                    update(ManualRefresh)
                    .where(col(ManualRefresh.client_id) == row.client_id)
                    .values(awaiting_refresh_id=None)
                )
        second = await _ask(database_url, firm, owner, awaited_per_firm=3)
        # One still on its way, so two places: the two never asked, then not the two through.
        assert (len(second.started), len(second.on_their_way), second.not_started) == (2, 1, 2)
        async with session_factory(engine)() as session:
            started_for = set(
                (
                    await session.execute(
                        select(ManualRefresh.client_id).where(
                            col(ManualRefresh.awaiting_refresh_id).in_(second.started)
                        )
                    )
                ).scalars()
            )
        assert started_for == left_out
    finally:
        await engine.dispose()
