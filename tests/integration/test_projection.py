"""The read model (invariants 2 and 3): replaying events changes nothing, a late event
cannot overwrite a newer one, and a rebuild from the log equals the live model."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from nats.aio.msg import Msg
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub_common.consumers import Delivery
from hub_common.db import transaction
from hub_common.events import (
    AccountantJoined,
    AccountantRemoved,
    Actor,
    CashFigure,
    ClientAdded,
    ClientCard,
    ClientConnection,
    ClientRemoved,
    ClientSource,
    CompaniesDiscovered,
    CompanyFigures,
    CompanySnapshot,
    DiscoveredCompany,
    Envelope,
    EventData,
    Failure,
    FailureKind,
    FirmCreated,
    RefreshFailed,
    RefreshRequested,
    RefreshScheduleSet,
    Role,
    first_refresh_id,
    new_envelope,
)
from hub_common.streams import EVENTS_STREAM, SNAPSHOTS_STREAM
from hub_gateway.clients import queries as clients_queries
from hub_gateway.readmodel.models import AccountantRow, ClientRow, CompanyRow, ProjectionPosition
from hub_gateway.readmodel.projection import apply_batch

FIRM = uuid.uuid4()
CLIENT = uuid.uuid4()
COMPANY_A, COMPANY_B = uuid.uuid4(), uuid.uuid4()
REFRESH = uuid.uuid4()
ACTOR = Actor.service("test")
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

Batch = list[tuple[Envelope[EventData], Delivery]]


def _delivery(stream: str, sequence: int) -> Delivery:
    return Delivery(
        subject="s", stream=stream, stream_sequence=sequence, num_delivered=1, headers={}, raw=cast(Msg, None)
    )


def _snapshot(company: uuid.UUID, total: str, read_at: datetime) -> CompanySnapshot:
    return CompanySnapshot(
        client_id=CLIENT,
        company_id=company,
        company_name=f"Company {company.hex[:4]}",
        refresh_id=REFRESH,
        currency_code="GBP",
        read_at=read_at,
        web_client_link="https://businesscentral.dynamics.com/t/Production?company=x",
        figures=CompanyFigures(cash=CashFigure(accounts=[], total=Decimal(total), source="api", read_at=read_at)),
    )


def _item(data: EventData, stream: str, sequence: int, firm: uuid.UUID = FIRM) -> tuple[Envelope[EventData], Delivery]:
    envelope: Envelope[EventData] = new_envelope(data, firm_id=firm, actor=ACTOR)
    return envelope, _delivery(stream, sequence)


def _history() -> Batch:
    """A firm's log: events on HUB_EVENTS and snapshots on HUB_SNAPSHOTS, in arrival order."""
    events: list[tuple[EventData, str, int]] = [
        (
            AccountantJoined(accountant_id=uuid.uuid4(), email="a@firm.example", display_name="A", role=Role.OWNER),
            EVENTS_STREAM,
            1,
        ),
        (
            ClientAdded(
                client_id=CLIENT,
                card=ClientCard(name="Contoso", client_url="https://businesscentral.dynamics.com/contoso.com"),
                connection=ClientConnection(tenant="contoso.com", environment="Production"),
                source=ClientSource.MANUAL,
            ),
            EVENTS_STREAM,
            2,
        ),
        (
            CompaniesDiscovered(
                client_id=CLIENT,
                refresh_id=REFRESH,
                companies=[
                    DiscoveredCompany(company_id=COMPANY_A, name="A"),
                    DiscoveredCompany(company_id=COMPANY_B, name="B"),
                ],
            ),
            EVENTS_STREAM,
            3,
        ),
        (_snapshot(COMPANY_A, "100.10", NOW), SNAPSHOTS_STREAM, 1),
        (
            RefreshFailed(
                refresh_id=REFRESH,
                client_id=CLIENT,
                company_id=COMPANY_B,
                company_name="B",
                failure=Failure(
                    kind=FailureKind.NO_COMPANY_ACCESS, summary="s", fix="f", http_status=403, occurred_at=NOW
                ),
            ),
            EVENTS_STREAM,
            4,
        ),
        (_snapshot(COMPANY_A, "250.00", NOW + timedelta(minutes=5)), SNAPSHOTS_STREAM, 2),
    ]
    return [(new_envelope(data, firm_id=FIRM, actor=ACTOR), _delivery(stream, seq)) for data, stream, seq in events]


async def _apply(sessions: async_sessionmaker[AsyncSession], batch: Batch) -> None:
    async with transaction(sessions) as session:
        await apply_batch(session, batch, NOW)


async def _dump(sessions: async_sessionmaker[AsyncSession]) -> dict[str, list[dict[str, Any]]]:
    dump: dict[str, list[dict[str, Any]]] = {}
    async with sessions() as session:
        for model in (AccountantRow, ClientRow, CompanyRow, ProjectionPosition):
            rows = (await session.execute(select(model))).scalars().all()
            dump[str(model.__tablename__)] = sorted((row.model_dump(mode="json") for row in rows), key=repr)
    return dump


async def test_replaying_the_log_changes_nothing(fresh_model: Callable[[], Any]) -> None:
    sessions = await fresh_model()
    history = _history()
    await _apply(sessions, history)
    once = await _dump(sessions)
    await _apply(sessions, history)
    for item in history:
        await _apply(sessions, [item])
    assert await _dump(sessions) == once
    companies = {row["company_id"]: row for row in once["gateway_companies"]}
    assert companies[str(COMPANY_A)]["state"] == "ok"
    assert Decimal(companies[str(COMPANY_A)]["figure_cash"]) == Decimal("250.00")
    assert companies[str(COMPANY_B)]["state"] == "failed"


async def test_rebuild_in_one_batch_equals_event_by_event(fresh_model: Callable[[], Any]) -> None:
    live, rebuilt = await fresh_model(), await fresh_model()
    history = _history()
    for item in history:
        await _apply(live, [item])
    await _apply(rebuilt, history)
    assert await _dump(live) == await _dump(rebuilt)


async def test_a_late_older_snapshot_does_not_overwrite_a_newer_one(fresh_model: Callable[[], Any]) -> None:
    sessions = await fresh_model()
    await _apply(sessions, _history())
    late = _item(_snapshot(COMPANY_A, "1.00", NOW - timedelta(hours=1)), SNAPSHOTS_STREAM, 3)
    await _apply(sessions, [late])
    async with sessions() as session:
        row = await session.get(CompanyRow, (CLIENT, COMPANY_A))
        assert row is not None
        assert row.figure_cash == Decimal("250.00")


async def test_events_of_another_firm_cannot_touch_a_client(fresh_model: Callable[[], Any]) -> None:
    sessions = await fresh_model()
    await _apply(sessions, _history())
    other_firm = uuid.uuid4()
    intruder = _item(ClientRemoved(client_id=CLIENT), EVENTS_STREAM, 10, other_firm)
    snapshot = _item(_snapshot(COMPANY_A, "9.99", NOW + timedelta(hours=1)), SNAPSHOTS_STREAM, 10, other_firm)
    await _apply(sessions, [intruder, snapshot])
    async with sessions() as session:
        client = await session.get(ClientRow, CLIENT)
        company = await session.get(CompanyRow, (CLIENT, COMPANY_A))
    assert client is not None
    assert not client.removed
    assert company is not None
    assert company.figure_cash == Decimal("250.00")


def _state(row: CompanyRow | None) -> str | None:
    return row.state if row is not None else None


async def test_order_between_the_two_streams_does_not_matter(fresh_model: Callable[[], Any]) -> None:
    """Events and snapshots are projected by two consumers with no order between them."""
    sessions = await fresh_model()
    added, discovered, snapshot_a = _history()[1], _history()[2], _history()[3]
    refresh = _item(
        RefreshRequested(
            refresh_id=REFRESH,
            client_id=CLIENT,
            connection=ClientConnection(tenant="contoso.com", environment="Production"),
        ),
        EVENTS_STREAM,
        3,
    )
    # The snapshot lands before even its client, then the refresh's own request and discovery.
    await _apply(sessions, [snapshot_a])
    await _apply(sessions, [added])
    await _apply(sessions, [(refresh[0], _delivery(EVENTS_STREAM, 3))])
    await _apply(sessions, [(discovered[0], _delivery(EVENTS_STREAM, 4))])
    async with sessions() as session:
        company_a = await session.get(CompanyRow, (CLIENT, COMPANY_A))
        company_b = await session.get(CompanyRow, (CLIENT, COMPANY_B))
    assert _state(company_a) == "ok", "a refresh's own request or discovery does not undo its result"
    assert company_a is not None
    assert company_a.figure_cash == Decimal("100.10")
    assert _state(company_b) == "refreshing"


async def test_an_older_failure_does_not_hide_newer_figures(fresh_model: Callable[[], Any]) -> None:
    sessions = await fresh_model()
    history = _history()
    late_snapshot = _item(_snapshot(COMPANY_B, "42.00", NOW + timedelta(minutes=1)), SNAPSHOTS_STREAM, 7)
    await _apply(sessions, [*history[:3], late_snapshot])
    await _apply(sessions, [history[4]])  # the RefreshFailed for B, from before the snapshot
    async with sessions() as session:
        company_b = await session.get(CompanyRow, (CLIENT, COMPANY_B))
    assert _state(company_b) == "ok"


async def test_a_first_refresh_failing_before_its_client_added_is_projected_still_shows(
    fresh_model: Callable[[], Any],
) -> None:
    """A wrong Client URL fails within a second of its ClientAdded; another gateway replica
    may apply that failure first. The client's row must still say failed, not queued."""
    sessions = await fresh_model()
    added = _history()[1]
    failed = RefreshFailed(
        refresh_id=first_refresh_id(added[0]),
        client_id=CLIENT,
        failure=Failure(kind=FailureKind.TENANT_NOT_FOUND, summary="s", fix="f", occurred_at=NOW),
    )
    await _apply(sessions, [(new_envelope(failed, firm_id=FIRM, actor=ACTOR), _delivery(EVENTS_STREAM, 3))])
    await _apply(sessions, [added])
    async with sessions() as session:
        client = await session.get(ClientRow, CLIENT)
    assert client is not None
    assert client.state == "failed"
    assert client.failure_json is not None and "tenant_not_found" in client.failure_json


async def _second_waits_for_first(sessions: async_sessionmaker[AsyncSession], *, first: Batch, second: Batch) -> None:
    """Two replicas' batches at once: the first written and held uncommitted while the
    second is applied, which must wait for the first's commit (and then fold onto it)."""
    first_written, go_on = asyncio.Event(), asyncio.Event()

    async def apply_first() -> None:
        async with transaction(sessions) as session:
            await apply_batch(session, first, NOW)
            first_written.set()
            await go_on.wait()

    applying_first = asyncio.create_task(apply_first())
    await asyncio.wait_for(first_written.wait(), 10)
    applying_second = asyncio.create_task(_apply(sessions, second))
    await asyncio.sleep(0.5)
    assert not applying_second.done(), "the second batch did not wait for the first's"
    go_on.set()
    await asyncio.wait_for(asyncio.gather(applying_first, applying_second), 10)


async def test_a_client_added_and_removed_in_two_concurrent_batches_stays_removed(
    fresh_model: Callable[[], Any],
) -> None:
    """Two gateway replicas each fold one of a new client's events, its row not there yet
    for either: the removal's transaction writes first and commits last. The ClientAdded's
    transaction must wait for it and fold onto what it wrote, or its row (whole, not
    removed) would replace the removal's and the removed client come back."""
    sessions = await fresh_model()
    added = _history()[1]
    removed = _item(ClientRemoved(client_id=CLIENT), EVENTS_STREAM, 9)
    await _second_waits_for_first(sessions, first=[removed], second=[added])
    async with sessions() as session:
        client = await session.get(ClientRow, CLIENT)
    assert client is not None
    assert client.removed, "the removed client came back"
    assert (client.name, client.source) == ("Contoso", "manual")


async def test_an_accountant_removed_and_joining_again_in_two_concurrent_batches_keeps_the_removal(
    fresh_model: Callable[[], Any],
) -> None:
    """An accountant's row exists; one replica applies their removal while another applies
    their joining again (a new invitation): the second must wait for the first and fold onto
    it, or its row would drop the moment the removal ended their old sessions and tokens."""
    sessions = await fresh_model()
    accountant = uuid.uuid4()
    joined = AccountantJoined(accountant_id=accountant, email="kim@firm.example", display_name="Kim", role=Role.STAFF)
    # The firm's row there too, so neither batch creates a row: only the accountant's row lock may serialize them.
    created = FirmCreated(name="Firm", owner_accountant_id=accountant)
    await _apply(sessions, [_item(created, EVENTS_STREAM, 1), _item(joined, EVENTS_STREAM, 2)])
    removed = _item(
        AccountantRemoved(accountant_id=accountant, email="kim@firm.example", removed_by=uuid.uuid4()), EVENTS_STREAM, 3
    )
    rejoined = _item(joined.model_copy(update={"role": Role.ADMIN}), EVENTS_STREAM, 4)
    await _second_waits_for_first(sessions, first=[removed], second=[rejoined])
    async with sessions() as session:
        row = await session.get(AccountantRow, accountant)
    assert row is not None
    assert (row.removed_at, row.role) == (None, "admin")
    assert row.access_ended_at == removed[0].occurred_at, "what they held before the removal works again"


async def test_a_client_kept_for_an_event_applied_before_its_client_added_is_not_listed_until_it_comes(
    fresh_model: Callable[[], Any],
) -> None:
    """Its schedule, applied first by another replica, keeps a row without a card: Manage
    Clients and the client's own endpoints do not show a nameless client meanwhile."""
    sessions = await fresh_model()
    added = _history()[1]
    scheduled = _item(RefreshScheduleSet(client_id=CLIENT, every_minutes=60), EVENTS_STREAM, 9)
    await _apply(sessions, [scheduled])
    async with sessions() as session:
        assert await session.get(ClientRow, CLIENT) is not None, "the schedule is kept"
        assert await clients_queries.clients(session, firm_id=FIRM) == []
        assert await clients_queries.client_in_firm(session, firm_id=FIRM, client_id=CLIENT) is None
    await _apply(sessions, [added])
    async with sessions() as session:
        [listed] = await clients_queries.clients(session, firm_id=FIRM)
        row = await session.get(ClientRow, CLIENT)
    assert listed.name == "Contoso"
    assert row is not None and row.refresh_schedule_json is not None and row.source == "manual"
