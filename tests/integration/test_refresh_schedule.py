"""The refresh schedule in the registry, on a real database: each client is refreshed when
its schedule (its own, else its firm's, else the hub's) is due and never in its quiet
hours, exactly once per interval whatever the ticks, and only when its tenant granted
access; an upgrade carries the old hub-wide schedule's last run over to every client."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, time, timedelta

import pytest
import structlog
from sqlalchemy import text
from sqlmodel import col, select

from hub_common.commands import CommandRejected, RejectionReason, SetRefreshSchedule
from hub_common.db import create_engine, migrate, session_factory, transaction
from hub_common.events import (
    Actor,
    ActorKind,
    CompaniesDiscovered,
    DiscoveredCompany,
    RefreshRequested,
    RefreshScheduleSet,
    decode_event,
)
from hub_registry.app import MIGRATIONS, VERSION_TABLE
from hub_registry.domain.refresh_schedule import RefreshSchedule
from hub_registry.models import (
    Accountant,
    Client,
    ClientScheduleRun,
    Firm,
    RefreshScheduleRow,
    TenantGrant,
    registry_outbox,
)
from hub_registry.service import refresh_outcomes, refreshes
from tests.conftest import POSTGRESQL_ONLY
from tests.integration.test_dashboard_model import _snapshot
from tests.support.registry_rows import insert_old_firm

HOURLY = RefreshSchedule(every=timedelta(hours=1), quiet_hours=None)
ADDED = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


async def _firm_with_clients(
    database_url: str, count: int, owner_email: str = "o@sched.example"
) -> tuple[uuid.UUID, uuid.UUID, list[uuid.UUID]]:
    await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE)
    engine = create_engine(database_url)
    firm, owner = Firm(name="Scheduled firm"), uuid.uuid4()
    clients = [uuid.uuid4() for _ in range(count)]
    try:
        async with transaction(session_factory(engine)) as session:
            session.add(firm)
            await session.flush()
            session.add(Accountant(id=owner, firm_id=firm.id, email=owner_email, display_name="O", role="owner"))
            for index, client_id in enumerate(clients):
                tenant_id = uuid.uuid4()
                session.add(
                    Client(
                        id=client_id,
                        firm_id=firm.id,
                        name=f"Client {index}",
                        client_url=f"https://businesscentral.dynamics.com/t{index}.example/Production",
                        tenant=f"t{index}.example",
                        tenant_id=tenant_id,
                        environment="Production",
                        source="manual",
                        created_at=ADDED,
                    )
                )
                await session.flush()
                # The last client's tenant never granted access.
                if index < count - 1:
                    session.add(
                        TenantGrant(firm_id=firm.id, tenant_id=tenant_id, tenant=f"t{index}.example", method="connect")
                    )
    finally:
        await engine.dispose()
    return firm.id, owner, clients


async def _tick(
    database_url: str, now: datetime, default: RefreshSchedule = HOURLY, *, answered: bool = True
) -> list[uuid.UUID]:
    """One look for due clients; the clients it asked a refresh of. ``answered``: each
    refresh then reaches the client's BC (its list of companies arrives), as a fetcher's
    does, so the schedule asks for the client again when due."""
    engine = create_engine(database_url)
    try:
        sessions = session_factory(engine)
        async with transaction(sessions) as session:
            before = (await session.execute(select(registry_outbox.c.position))).all()
            await refreshes.refresh_due_clients(
                session=session, operator_default=default, now=now, correlation_id="tick"
            )
        async with sessions() as session:
            rows = (await session.execute(select(registry_outbox.c.payload).order_by(registry_outbox.c.position))).all()
        requested: list[RefreshRequested] = []
        for row in rows[len(before) :]:
            data = decode_event(row.payload).data
            assert isinstance(data, RefreshRequested)
            requested.append(data)
        if answered:
            async with transaction(sessions) as session:
                for data in requested:
                    listed = CompaniesDiscovered(client_id=data.client_id, refresh_id=data.refresh_id, companies=[])
                    await refresh_outcomes.outcome_arrived(session=session, outcome=listed)
    finally:
        await engine.dispose()
    return [data.client_id for data in requested]


async def _set(database_url: str, firm: uuid.UUID, owner: uuid.UUID, **schedule: object) -> None:
    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            command = SetRefreshSchedule(
                firm_id=firm,
                actor=Actor(kind=ActorKind.ACCOUNTANT, id=str(owner), display_name="o@sched.example"),
                correlation_id="set",
                **schedule,
            )
            await refreshes.set_refresh_schedule(session=session, command=command)
    finally:
        await engine.dispose()


async def test_each_client_is_refreshed_once_per_interval_once_granted(database_url: str) -> None:
    _, _, clients = await _firm_with_clients(database_url, 3)
    granted = clients[:2]
    # Each client's first slot of its own after it was added, within the hour.
    slots = {client: HOURLY.latest_slot(client, ADDED + timedelta(hours=1)) for client in granted}
    assert all(ADDED < slot <= ADDED + timedelta(hours=1) for slot in slots.values())

    assert await _tick(database_url, min(slots.values()) - timedelta(seconds=1)) == []
    # Random ids share a slot one run in 3,600: such clients are asked for together.
    for slot in sorted(set(slots.values())):
        assert sorted(await _tick(database_url, slot)) == sorted(c for c, at in slots.items() if at == slot)
    # Ticks within the next interval ask for nothing more; the next slots, again.
    assert await _tick(database_url, max(slots.values()) + timedelta(seconds=2)) == []
    assert await _tick(database_url, min(slots.values()) + timedelta(minutes=59)) == []
    assert set(await _tick(database_url, max(slots.values()) + timedelta(hours=1, seconds=1))) == set(granted)
    # The hub's default off, and no schedule of the firm's: nothing.
    assert await _tick(database_url, ADDED + timedelta(days=3), RefreshSchedule(every=None, quiet_hours=None)) == []


async def test_a_client_whose_refresh_has_not_reached_its_bc_is_not_asked_again_until_it_has(
    database_url: str,
) -> None:
    """BC offline or throttling: the fetchers retry the refresh for up to two and a half
    hours, and each request waiting for its retry holds a place in their queue that every
    firm shares. The hourly schedule asks nothing more of the client meanwhile; once an
    outcome arrives it is due again at once, and an outcome never seen is waited for three
    hours at most."""
    _, _, clients = await _firm_with_clients(database_url, 2)
    client = clients[0]
    slot = HOURLY.latest_slot(client, ADDED + timedelta(hours=1))
    assert await _tick(database_url, slot, answered=False) == [client]
    for hours in (1, 2):
        assert await _tick(database_url, slot + timedelta(hours=hours, seconds=1), answered=False) == []
    engine = create_engine(database_url)
    try:
        sessions = session_factory(engine)
        async with sessions() as session:
            [payload] = (
                await session.execute(
                    select(registry_outbox.c.payload).order_by(registry_outbox.c.position.desc()).limit(1)
                )
            ).one()
        first = decode_event(payload).data
        assert isinstance(first, RefreshRequested)
        async with transaction(sessions) as session:
            # Another refresh's outcome does not end the wait; its own does.
            other = CompaniesDiscovered(client_id=client, refresh_id=uuid.uuid4(), companies=[])
            await refresh_outcomes.outcome_arrived(session=session, outcome=other)
    finally:
        await engine.dispose()
    assert await _tick(database_url, slot + timedelta(hours=2, minutes=30), answered=False) == []
    # Its list of companies alone does not either (their reads may wait to be retried); a
    # company read does.
    company = uuid.uuid4()
    listed = CompaniesDiscovered(
        client_id=client, refresh_id=first.refresh_id, companies=[DiscoveredCompany(company_id=company, name="A")]
    )
    read = _snapshot(client, company, "A", "1.00", 0, first.refresh_id)
    async with transaction(session_factory(engine := create_engine(database_url))) as session:
        await refresh_outcomes.outcome_arrived(session=session, outcome=listed)
    assert await _tick(database_url, slot + timedelta(hours=2, minutes=31), answered=False) == []
    async with transaction(session_factory(engine)) as session:
        await refresh_outcomes.outcome_arrived(session=session, outcome=read)
    await engine.dispose()
    assert await _tick(database_url, slot + timedelta(hours=2, minutes=31), answered=False) == [client]
    # Never answered: asked again once the three hours have passed.
    assert await _tick(database_url, slot + timedelta(hours=5, minutes=30), answered=False) == []
    assert await _tick(database_url, slot + timedelta(hours=5, minutes=31), answered=False) == [client]
    # Asked by a replica whose clock ran a day ahead: not a wait of a day and three hours.
    assert await _tick(database_url, slot + timedelta(days=1, hours=5, minutes=31), answered=False) == [client]
    assert await _tick(database_url, slot + timedelta(hours=5, minutes=32), answered=False) == [client]


async def _ticks(database_url: str, times: list[datetime], default: RefreshSchedule) -> Counter[datetime]:
    """Many looks for due clients on one engine; how many clients each asked a refresh of."""
    engine = create_engine(database_url)
    asked: Counter[datetime] = Counter()
    try:
        sessions = session_factory(engine)
        for now in times:
            async with transaction(sessions) as session:
                asked[now] = await refreshes.refresh_due_clients(
                    session=session, operator_default=default, now=now, correlation_id="tick"
                )
    finally:
        await engine.dispose()
    return asked


async def test_many_clients_due_at_once_are_spread_over_the_interval_and_after_quiet_hours(database_url: str) -> None:
    firm, owner, _ = await _firm_with_clients(database_url, 31)  # 30 granted
    await _set(
        database_url, firm, owner, every_minutes=240, quiet_from=time(22, 0), quiet_until=time(6, 30), time_zone="UTC"
    )
    # All were added at 08:00, so share their last run: before, all 30 ran in one tick at
    # 12:00, 16:01, ... and at 06:30 after quiet hours, forever.
    day = [ADDED + timedelta(minutes=minute) for minute in range(1, 24 * 60 + 60)]
    asked = await _ticks(database_url, day, HOURLY)
    assert sum(asked.values()) >= 30 * 4  # each ran in every slot outside quiet hours...
    assert max(asked.values()) <= 15  # ...and no tick asked for half of them (ids are random)
    end_of_quiet = datetime(2026, 12, 2, 6, 30, tzinfo=UTC)
    catch_up = [asked[end_of_quiet + timedelta(minutes=minute)] for minute in range(6)]
    assert sum(catch_up) == 30 and len([count for count in catch_up if count]) >= 4
    assert not any(asked[ADDED.replace(hour=hour) + timedelta(days=1)] for hour in (22, 23))  # quiet
    assert not any(count for at, count in asked.items() if at.hour < 6 and at.date() == end_of_quiet.date())


async def test_quiet_hours_in_the_firms_time_zone_hold_a_refresh_until_they_end(database_url: str) -> None:
    firm, owner, clients = await _firm_with_clients(database_url, 2)
    # 22:00-06:30 in Amsterdam (UTC+1 in December) is 21:00-05:30 UTC.
    await _set(
        database_url,
        firm,
        owner,
        every_minutes=60,
        quiet_from=time(22, 0),
        quiet_until=time(6, 30),
        time_zone="Europe/Amsterdam",
    )
    evening = datetime(2026, 12, 1, 21, 30, tzinfo=UTC)
    assert await _tick(database_url, evening) == []
    assert await _tick(database_url, datetime(2026, 12, 2, 5, 29, tzinfo=UTC)) == []
    # Caught up within five minutes of their end, at the client's share of them.
    assert await _tick(database_url, datetime(2026, 12, 2, 5, 35, tzinfo=UTC)) == [clients[0]]


async def test_a_clients_own_schedule_replaces_the_firms(database_url: str) -> None:
    firm, owner, clients = await _firm_with_clients(database_url, 3)
    await _set(database_url, firm, owner, every_minutes=None)  # the firm: never on schedule
    await _set(database_url, firm, owner, client_id=clients[1], every_minutes=15)
    assert await _tick(database_url, ADDED + timedelta(minutes=16)) == [clients[1]]
    await _set(database_url, firm, owner, client_id=clients[1], follows_firm=True)
    assert await _tick(database_url, ADDED + timedelta(hours=5)) == []

    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            payloads = (await session.execute(select(registry_outbox.c.payload))).scalars().all()
    finally:
        await engine.dispose()
    audit = [decode_event(payload).data for payload in payloads]
    assert [event.client_id for event in audit if isinstance(event, RefreshScheduleSet)] == [
        None,
        clients[1],
        clients[1],
    ]


async def test_an_upgrade_carries_the_last_hub_wide_run_over_to_every_client(database_url: str) -> None:
    await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE, "0006")
    firm, client, removed = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await insert_old_firm(connection, firm)
            for client_id, removed_at in ((client, None), (removed, "2026-11-02 10:00:00")):
                await connection.execute(
                    text(
                        "INSERT INTO registry_clients (id, firm_id, name, client_url, tenant, environment, source,"
                        " created_at, updated_at, removed_at) VALUES (:id, :firm, 'C', 'https://x', 't.example',"
                        " 'Production', 'manual', '2026-11-01 10:00:00', '2026-11-01 10:00:00', :removed)"
                    ),
                    {"id": client_id.hex, "firm": firm.hex, "removed": removed_at},
                )
            await connection.execute(
                text("INSERT INTO registry_schedule_runs (name, last_run_at)"
                     " VALUES ('refresh-every-client', '2026-12-03 09:00:00')"),
            )  # fmt: skip
        await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE)
        async with session_factory(engine)() as session:
            runs = (
                await session.execute(select(ClientScheduleRun).order_by(col(ClientScheduleRun.client_id)))
            ).scalars()
            assert [(run.client_id, run.last_run_at) for run in runs] == [
                (client, datetime(2026, 12, 3, 9, 0, tzinfo=UTC))
            ]
    finally:
        await engine.dispose()


async def test_a_saved_schedule_that_can_no_longer_be_kept_falls_back_and_stops_nobody(database_url: str) -> None:
    firm, owner, clients = await _firm_with_clients(database_url, 3)
    await _set(database_url, firm, owner, every_minutes=None)  # the firm: never on schedule
    await _set(database_url, firm, owner, client_id=clients[1], every_minutes=15)
    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            # Saved when the host still had this zone, or before the rules tightened.
            session.add(
                RefreshScheduleRow(firm_id=firm, client_id=clients[0], every_minutes=15, time_zone="Mars/Olympus_Mons")
            )
    finally:
        await engine.dispose()
    # Client 0 follows the firm's (off); client 1 keeps its own; the tick does not fail, and
    # the row is logged once, not every tick.
    with structlog.testing.capture_logs() as logs:
        assert await _tick(database_url, ADDED + timedelta(minutes=16)) == [clients[1]]
        assert clients[0] not in await _tick(database_url, ADDED + timedelta(minutes=40))
    unkeepable = [log for log in logs if log["event"].startswith("saved refresh schedule cannot be kept")]
    assert [(log["client_id"], log["field"]) for log in unkeepable] == [(str(clients[0]), "time_zone")]

    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            row = (
                await session.execute(select(RefreshScheduleRow).where(col(RefreshScheduleRow.client_id).is_(None)))
            ).scalar_one()
            row.quiet_from, row.quiet_until = time(22, 0, 0, 1), time(22, 0)  # quiet all day
            row.every_minutes = 60
    finally:
        await engine.dispose()
    # The firm's row is refused too: its clients follow the hub's hourly one.
    assert set(await _tick(database_url, ADDED + timedelta(hours=2))) == {clients[0], clients[1]}


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        ({"quiet_from": time(22, 0, 0, 1), "quiet_until": time(22, 0)}, "quiet_from"),
        ({"quiet_from": time(22, 0), "quiet_until": time(6, 30, 30)}, "quiet_until"),
        ({"quiet_from": time(6, 0), "quiet_until": time(4, 0)}, "quiet_hours"),  # 22 hours
        ({"time_zone": "localtime"}, "time_zone"),
        ({"time_zone": "Factory"}, "time_zone"),
        ({"time_zone": "posixrules"}, "time_zone"),
    ],
)
async def test_a_schedule_that_cannot_be_kept_is_refused_naming_its_field(
    database_url: str, schedule: dict[str, object], field: str
) -> None:
    firm, owner, _ = await _firm_with_clients(database_url, 1)
    with pytest.raises(CommandRejected) as refused:
        await _set(database_url, firm, owner, every_minutes=60, **schedule)
    assert refused.value.rejection.reason is RejectionReason.INVALID
    assert refused.value.rejection.field == field


async def test_a_burst_of_due_clients_is_spread_over_ticks_and_the_firms_take_turns(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every client due at once (the registry away for a day): all were asked in the first
    tick, the big firm's thousands queued ahead of the small firm's few."""
    monkeypatch.setattr(refreshes, "SCHEDULED_PER_TICK_AT_LEAST", 6)
    _, _, big = await _firm_with_clients(database_url, 13, owner_email="o@big-firm.example")  # 12 granted
    _, _, small = await _firm_with_clients(database_url, 3, owner_email="o@small-firm.example")  # 2 granted
    # Daily, and looked at in minutes where no client's own next slot comes (it would be
    # read again there, rightly).
    daily = RefreshSchedule(every=timedelta(days=1), quiet_hours=None)
    after_an_outage = ADDED + timedelta(days=2)
    while any(daily.latest_slot(c, after_an_outage + timedelta(minutes=4)) > after_an_outage for c in big + small):
        after_an_outage += timedelta(minutes=5)
    first = await _tick(database_url, after_an_outage, daily)
    # 14 daily clients ask 14/1,440 a minute: the tick's share is the floor, 6.
    assert len(first) == 6
    assert set(small[:2]) <= set(first), "the small firm waited behind the big one"
    later: list[uuid.UUID] = []
    for minute in range(1, 4):
        later += await _tick(database_url, after_an_outage + timedelta(minutes=minute), daily)
    assert sorted(map(str, first + later)) == sorted(map(str, big[:12] + small[:2])), "each once, none lost"


@pytest.mark.parametrize("database_url", POSTGRESQL_ONLY, indirect=True)
async def test_the_schedule_ticks_past_65535_clients(database_url: str) -> None:
    """PostgreSQL takes at most 65,535 parameters per statement: a tick that listed every
    client's id as one failed, every minute, for every firm, once the hub had more."""
    firm, _, _ = await _firm_with_clients(database_url, 1)
    count = 70_000
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            # Added as the tick runs: none is due, but every one is weighed.
            await connection.execute(
                text(
                    "INSERT INTO registry_clients (id, firm_id, name, client_url, tenant, tenant_id, environment,"
                    " source, created_at, updated_at) SELECT md5('c' || n)::uuid, :firm, 'Client ' || n,"
                    " 'https://businesscentral.dynamics.com/t' || n || '.example/Production', 't' || n || '.example',"
                    " md5('t' || n)::uuid, 'Production', 'manual', :added, :added FROM generate_series(1, :count) n"
                ),
                {"firm": firm, "added": ADDED, "count": count},
            )
            await connection.execute(
                text(
                    "INSERT INTO registry_tenant_grants (id, firm_id, tenant_id, tenant, method, granted_at)"
                    " SELECT md5('g' || n)::uuid, :firm, md5('t' || n)::uuid, 't' || n || '.example', 'connect',"
                    " :added FROM generate_series(1, :count) n"
                ),
                {"firm": firm, "added": ADDED, "count": count},
            )
    finally:
        await engine.dispose()
    assert await _tick(database_url, ADDED) == []


async def test_a_firm_with_many_refreshes_on_their_way_waits_and_another_firm_does_not(database_url: str) -> None:
    """The fetchers take every firm's requests in the order asked: a firm whose scheduled
    refreshes are not through (the fetchers behind) is asked for no more than its ceiling
    awaits, while a small firm's clients are asked for as usual."""
    _, _, large = await _firm_with_clients(database_url, 9, owner_email="o@large.example")  # 8 granted
    _, _, small = await _firm_with_clients(database_url, 3, owner_email="o@small.example")  # 2 granted
    engine = create_engine(database_url)
    try:
        sessions = session_factory(engine)

        async def tick(now: datetime) -> Counter[str]:
            async with transaction(sessions) as session:
                before = len((await session.execute(select(registry_outbox.c.position))).all())
                await refreshes.refresh_due_clients(
                    session=session, operator_default=HOURLY, now=now, correlation_id="tick", awaited_per_firm=3
                )
                payloads = (
                    await session.execute(select(registry_outbox.c.payload).order_by(registry_outbox.c.position))
                ).scalars()
                asked = [decode_event(payload).data for payload in list(payloads)[before:]]
            assert all(isinstance(data, RefreshRequested) for data in asked)
            return Counter("large" if getattr(data, "client_id", None) in large else "small" for data in asked)

        # Every client due (a day after they were added); nothing answered.
        assert await tick(ADDED + timedelta(days=1)) == Counter(large=3, small=2)
        assert await tick(ADDED + timedelta(days=1, minutes=1)) == Counter()
        # Three hours on, the waits are over (never answered): three of the large firm's
        # again, the small firm's two as well.
        assert await tick(ADDED + timedelta(days=1, hours=3, minutes=1)) == Counter(large=3, small=2)
    finally:
        await engine.dispose()
    assert len(small) == 3


async def test_a_run_keeps_its_interval_and_a_new_interval_does_not_ask_again_minutes_later(
    database_url: str,
) -> None:
    """Each run keeps the interval it was asked under; changed, the interval places the
    client's slots anew, and the first is one at least the shorter interval after the run."""
    firm, owner, clients = await _firm_with_clients(database_url, 2)
    await _set(database_url, firm, owner, every_minutes=15)
    asked_at = ADDED + timedelta(hours=1)
    assert await _tick(database_url, asked_at) == [clients[0]]
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            run = await session.get(ClientScheduleRun, clients[0])
            assert run is not None and run.every_seconds == 15 * 60
    finally:
        await engine.dispose()
    # Changed minute after minute: nothing until 15 minutes after the run.
    for minute in range(1, 15):
        await _set(database_url, firm, owner, every_minutes=15 + minute)
        assert await _tick(database_url, asked_at + timedelta(minutes=minute)) == [], minute
