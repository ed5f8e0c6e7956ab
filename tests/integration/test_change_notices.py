"""Business Central's change notices in the registry, on a real database: each notice is an
audit event; the first asks for the company's refresh at once, later ones within the
coalescing window wait and end in exactly one refresh at the window's end; a removed or
ungranted client, or another firm's, is refused (BC then deletes the subscription); and a
client whose schedule is off is still read daily while the hub subscribes."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import time, timedelta

import pytest
from sqlmodel import select

from hub_common.commands import CommandRejected, RecordBusinessCentralChanges, RejectionReason
from hub_common.db import create_engine, session_factory, transaction
from hub_common.events import (
    Actor,
    BusinessCentralChanged,
    CompaniesDiscovered,
    CompanySnapshot,
    DiscoveredCompany,
    Failure,
    FailureKind,
    RefreshFailed,
    RefreshRequested,
    decode_event,
)
from hub_registry.domain.refresh_schedule import RefreshSchedule
from hub_registry.models import registry_outbox
from hub_registry.service import change_notices, refresh_outcomes, refreshes
from tests.integration.test_dashboard_model import _snapshot
from tests.integration.test_refresh_schedule import ADDED, _firm_with_clients, _set, _tick

WINDOW = timedelta(seconds=60)
COMPANY = uuid.uuid4()


def _notice(firm_id: uuid.UUID, client_id: uuid.UUID, company_id: uuid.UUID = COMPANY) -> RecordBusinessCentralChanges:
    return RecordBusinessCentralChanges(
        firm_id=firm_id,
        actor=Actor.service("business-central"),
        correlation_id="notice",
        client_id=client_id,
        company_id=company_id,
        entities=["salesInvoices"],
        notices=2,
    )


async def _events(database_url: str, action: object) -> list[object]:
    """Run one registry step in a transaction; the events it appended to the outbox."""
    engine = create_engine(database_url)
    try:
        sessions = session_factory(engine)
        async with sessions() as session:
            before = len((await session.execute(select(registry_outbox.c.position))).all())
        async with transaction(sessions) as session:
            await action(session)  # type: ignore[operator]
        async with sessions() as session:
            rows = (await session.execute(select(registry_outbox.c.payload).order_by(registry_outbox.c.position))).all()
    finally:
        await engine.dispose()
    return [decode_event(row.payload).data for row in rows[before:]]


Step = Callable[[timedelta], Awaitable[list[object]]]


def _notices_and_windows(database_url: str, firm: uuid.UUID, client: uuid.UUID) -> tuple[Step, Step]:
    """A notice of the client's company at ADDED + offset, and the registry's look for
    companies whose window ended then: each step's events."""

    async def notice_at(offset: timedelta) -> list[object]:
        return await _events(
            database_url,
            lambda session: change_notices.record_changes(
                session=session, command=_notice(firm, client), coalesce=WINDOW, now=ADDED + offset
            ),
        )

    async def window_end_at(offset: timedelta) -> list[object]:
        return await _events(
            database_url,
            lambda session: change_notices.refresh_waiting_companies(
                session=session, coalesce=WINDOW, now=ADDED + offset, correlation_id="tick"
            ),
        )

    return notice_at, window_end_at


async def test_notices_are_recorded_and_coalesced_into_one_refresh_per_window(database_url: str) -> None:
    firm, _, clients = await _firm_with_clients(database_url, 2)
    client = clients[0]
    notice_at, window_end_at = _notices_and_windows(database_url, firm, client)

    first = await notice_at(timedelta(0))
    requested = [e for e in first if isinstance(e, RefreshRequested)]
    changed = [e for e in first if isinstance(e, BusinessCentralChanged)]
    assert len(requested) == 1 and requested[0].company_id == COMPANY and requested[0].client_id == client
    assert len(changed) == 1 and changed[0].refresh_id == requested[0].refresh_id

    # Within the window: the first that waits is recorded, with no refresh yet; the next
    # ones add nothing (the refresh at the window's end is owed already).
    waiting = await notice_at(timedelta(seconds=10))
    assert [type(e) for e in waiting] == [BusinessCentralChanged]
    assert waiting[0].refresh_id is None  # type: ignore[attr-defined]
    for seconds in (20, 30, 40):
        assert await notice_at(timedelta(seconds=seconds)) == []
    assert await window_end_at(timedelta(seconds=59)) == []
    await _answer(database_url, _read(requested[0]))
    ended = await window_end_at(timedelta(seconds=61))
    assert [type(e) for e in ended] == [RefreshRequested]
    await _answer(database_url, _read(ended[0]))  # type: ignore[arg-type]
    # The changes are caught: nothing waits any more.
    assert await window_end_at(timedelta(seconds=200)) == []
    # A notice after a quiet window asks at once again.
    again = await notice_at(timedelta(seconds=200))
    assert RefreshRequested in [type(e) for e in again]


def _failed(requested: RefreshRequested, company_id: uuid.UUID | None = COMPANY) -> RefreshFailed:
    return RefreshFailed(
        refresh_id=requested.refresh_id,
        client_id=requested.client_id,
        company_id=company_id,
        failure=Failure(
            kind=FailureKind.TIMEOUT,
            summary="Business Central did not answer in time.",
            fix="Nothing to do.",
            occurred_at=ADDED,
        ),
    )


def _read(requested: RefreshRequested, company_id: uuid.UUID = COMPANY) -> CompanySnapshot:
    snapshot: CompanySnapshot = _snapshot(requested.client_id, company_id, "Company", "1.00", 0, requested.refresh_id)
    return snapshot


async def _answer(database_url: str, outcome: CompanySnapshot | RefreshFailed | CompaniesDiscovered) -> None:
    """The refresh's outcome reached the registry (as its consumers hand it over)."""
    await _events(database_url, lambda session: refresh_outcomes.outcome_arrived(session=session, outcome=outcome))


async def test_a_company_whose_refresh_is_unanswered_is_not_asked_again_until_it_is(database_url: str) -> None:
    """A slow or throttled tenant: the company's refresh waits to be retried. Its notices
    wait for the outcome, each window, instead of asking again (every request would hold a
    place in the fetchers' queue every firm shares); the outcome lets the window's end ask
    once, and an outcome never seen is waited for three hours at most."""
    firm, _, clients = await _firm_with_clients(database_url, 2)
    client = clients[0]
    notice_at, window_end_at = _notices_and_windows(database_url, firm, client)

    def asked(events: list[object]) -> list[RefreshRequested]:
        return [e for e in events if isinstance(e, RefreshRequested)]

    [first] = asked(await notice_at(timedelta(0)))
    # Windows pass, notices keep coming: nothing more is asked while the first is unanswered.
    for minute in range(2, 30, 3):
        assert asked(await notice_at(timedelta(minutes=minute))) == []
        assert await window_end_at(timedelta(minutes=minute, seconds=30)) == []
    # Another company's outcome, another refresh's, or a list still holding the company,
    # does not answer it.
    await _answer(database_url, _read(first, company_id=uuid.uuid4()))
    await _answer(database_url, _failed(first.model_copy(update={"refresh_id": uuid.uuid4()})))
    await _answer(database_url, _listed(first, [COMPANY]))
    assert await window_end_at(timedelta(minutes=31)) == []
    # Its own does: the notices that waited ask once.
    await _answer(database_url, _failed(first))
    [second] = asked(await window_end_at(timedelta(minutes=32)))
    assert second.company_id == COMPANY
    assert await window_end_at(timedelta(minutes=33)) == []
    # A failure of the whole client answers it too...
    assert asked(await notice_at(timedelta(minutes=34))) == []
    await _answer(database_url, _failed(second, company_id=None))
    [third] = asked(await window_end_at(timedelta(minutes=35)))
    assert third.refresh_id != second.refresh_id
    # ...and a list of the client's companies without it (gone from BC: no snapshot comes).
    assert asked(await notice_at(timedelta(minutes=36))) == []
    await _answer(database_url, _listed(third, [uuid.uuid4()]))
    [third] = asked(await window_end_at(timedelta(minutes=37)))
    # An outcome that never comes is waited for past a refresh's last retry, not for ever.
    assert asked(await notice_at(timedelta(minutes=40))) == []
    patience = refreshes.ANSWER_AWAITED_AT_MOST
    assert patience >= timedelta(hours=2, minutes=35)
    assert await window_end_at(timedelta(minutes=37) + patience - timedelta(minutes=1)) == []
    assert len(asked(await window_end_at(timedelta(minutes=37) + patience))) == 1
    # Asked by a replica whose clock ran a day ahead: its window and its wait would last a
    # day longer than they should, so a moment still to come is not waited on.
    later = timedelta(days=2)
    assert len(asked(await notice_at(later + timedelta(days=1)))) == 1
    assert len(asked(await notice_at(later))) == 1


def _listed(requested: RefreshRequested, companies: list[uuid.UUID]) -> CompaniesDiscovered:
    """A one-company refresh's list of the client's companies."""
    return CompaniesDiscovered(
        client_id=requested.client_id,
        refresh_id=requested.refresh_id,
        companies=[DiscoveredCompany(company_id=company_id, name="Company") for company_id in companies],
        refresh_company_id=requested.company_id,
    )


async def test_a_notice_for_a_client_the_firm_cannot_read_is_refused(database_url: str) -> None:
    firm, _, clients = await _firm_with_clients(database_url, 2)
    other_firm, _, other_clients = await _firm_with_clients(database_url, 2, owner_email="o@other.example")
    cases = [
        (firm, clients[1]),  # its tenant never granted access
        (firm, other_clients[0]),  # another firm's client under this firm's key
        (other_firm, clients[0]),
        (firm, uuid.uuid4()),
    ]
    for firm_id, client_id in cases:
        with pytest.raises(CommandRejected) as refused:
            await _events(
                database_url,
                lambda session, f=firm_id, c=client_id: change_notices.record_changes(
                    session=session, command=_notice(f, c), coalesce=WINDOW, now=ADDED
                ),
            )
        assert refused.value.rejection.reason is RejectionReason.NOT_FOUND


async def test_a_client_with_its_schedule_off_is_still_read_daily_while_the_hub_subscribes(database_url: str) -> None:
    _, _, clients = await _firm_with_clients(database_url, 2)
    off = RefreshSchedule(every=None, quiet_hours=None)

    async def tick(offset: timedelta, upkeep: timedelta | None) -> list[object]:
        return await _events(
            database_url,
            lambda session: refreshes.refresh_due_clients(
                session=session, operator_default=off, now=ADDED + offset, correlation_id="tick", upkeep=upkeep
            ),
        )

    assert await tick(timedelta(days=2), None) == []

    # The upkeep's daily slot of the client's own, within a day of its being added.
    slot = RefreshSchedule(every=timedelta(hours=24), quiet_hours=None).latest_slot(
        clients[0], ADDED + timedelta(days=1)
    )
    assert await tick(slot - ADDED - timedelta(seconds=1), timedelta(hours=24)) == []
    daily = await tick(slot - ADDED, timedelta(hours=24))
    assert [e.client_id for e in daily] == [clients[0]]  # type: ignore[attr-defined]
    assert await _tick(database_url, slot + timedelta(hours=1), off) == []


async def test_a_client_on_a_weekly_schedule_is_also_read_daily_while_the_hub_subscribes(database_url: str) -> None:
    _, _, clients = await _firm_with_clients(database_url, 2)
    weekly = RefreshSchedule(every=timedelta(days=7), quiet_hours=None)

    async def tick(offset: timedelta, upkeep: timedelta | None) -> list[object]:
        return await _events(
            database_url,
            lambda session: refreshes.refresh_due_clients(
                session=session, operator_default=weekly, now=ADDED + offset, correlation_id="tick", upkeep=upkeep
            ),
        )

    # Its weekly slot (somewhere in its first week) runs; a day later only the upkeep is due.
    weekly_run = weekly.latest_slot(clients[0], ADDED + timedelta(days=7)) + timedelta(minutes=1) - ADDED
    assert [e.client_id for e in await tick(weekly_run, None)] == [clients[0]]  # type: ignore[attr-defined]
    assert await tick(weekly_run + timedelta(hours=25), None) == []
    daily = await tick(weekly_run + timedelta(hours=25), timedelta(hours=24))
    assert [e.client_id for e in daily] == [clients[0]]  # type: ignore[attr-defined]


async def test_the_upkeep_reads_a_client_in_its_quiet_hours_only_when_40_hours_passed(database_url: str) -> None:
    firm, owner, clients = await _firm_with_clients(database_url, 2)
    # Quiet 20 hours a day, 06:00-02:00 UTC: ticks that miss the four hours between (the
    # hub was down then) would never read the client; after 25 hours it waits for quiet
    # hours to end, after 40 it is read in them, before its subscriptions could lapse.
    await _set(database_url, firm, owner, every_minutes=None, quiet_from=time(6, 0), quiet_until=time(2, 0))
    off = RefreshSchedule(every=None, quiet_hours=None)

    async def tick(offset: timedelta) -> list[object]:
        return await _events(
            database_url,
            lambda session: refreshes.refresh_due_clients(
                session=session,
                operator_default=off,
                now=ADDED + offset,
                correlation_id="tick",
                upkeep=timedelta(days=1),
            ),
        )

    assert await tick(timedelta(hours=24)) == []  # quiet, and read (added) a day ago
    assert await tick(timedelta(hours=25)) == []
    assert await tick(timedelta(hours=39)) == []
    assert [e.client_id for e in await tick(timedelta(hours=40))] == [clients[0]]  # type: ignore[attr-defined]
    assert await tick(timedelta(hours=41)) == []
