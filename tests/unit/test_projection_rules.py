"""The read model's rules, without a database: one pure function per event type, folded
over a firm's events in memory (hub_gateway/readmodel/rules.py)."""

from __future__ import annotations

import copy
import json
import re
import uuid
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from hub_common.events import (
    EVENT_TYPES,
    AccountantJoined,
    AccountantRemoved,
    Actor,
    AlertRaised,
    AlertRecipient,
    AlertResolved,
    BusinessCentralChanged,
    CashFigure,
    ClientAdded,
    ClientCard,
    ClientConnection,
    ClientRemoved,
    ClientSource,
    ClientUpdated,
    CompaniesDiscovered,
    CompanyFigures,
    CompanySnapshot,
    DiscoveredCompany,
    EventData,
    ExchangeRate,
    ExchangeRates,
    Failure,
    FailureKind,
    FirmCreated,
    GrantMethod,
    InvitationRejected,
    NotificationState,
    NotificationSubscriptionsChecked,
    RefreshDeferred,
    RefreshFailed,
    RefreshRequested,
    RefreshScheduleSet,
    Role,
    TenantAccessGranted,
    TenantAccessRevoked,
    first_refresh_id,
    new_envelope,
)
from hub_common.streams import EVENTS_STREAM, SNAPSHOTS_STREAM
from hub_gateway.readmodel.projection import COMPANIES, STORED
from hub_gateway.readmodel.rules import IGNORED_EVENT_TYPES, RULES, fold
from hub_gateway.readmodel.state import ClientState, CompanyState, ModelState, RowState, StoredEvent

FIRM, OTHER_FIRM = uuid.uuid4(), uuid.uuid4()
CLIENT = uuid.uuid4()
COMPANY_A, COMPANY_B = uuid.uuid4(), uuid.uuid4()
FIRST_REFRESH, SECOND_REFRESH = uuid.uuid4(), uuid.uuid4()
TENANT_ID = uuid.uuid4()
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
CONNECTION = ClientConnection(tenant="contoso.example", environment="Production")


class Log:
    """A firm's events, each stored at the next sequence of its stream."""

    def __init__(self) -> None:
        self.sequences = {EVENTS_STREAM: 0, SNAPSHOTS_STREAM: 0}
        self.events: list[StoredEvent[Any]] = []

    def add(self, data: EventData, *, firm: uuid.UUID = FIRM, at: datetime = T0) -> StoredEvent[Any]:
        stream = SNAPSHOTS_STREAM if isinstance(data, CompanySnapshot) else EVENTS_STREAM
        self.sequences[stream] += 1
        envelope = new_envelope(data, firm_id=firm, actor=Actor.service("test")).model_copy(update={"occurred_at": at})
        event = StoredEvent(envelope, stream, self.sequences[stream])
        self.events.append(event)
        return event


def _folded(*events: StoredEvent[Any], model: ModelState | None = None) -> ModelState:
    return fold(model or ModelState(applied_at=T0), events)


def _failure(kind: FailureKind, at: datetime) -> Failure:
    return Failure(kind=kind, summary="summary", fix="fix", occurred_at=at)


def _snapshot(
    company: uuid.UUID, cash: str, read_at: datetime, refresh: uuid.UUID = FIRST_REFRESH, *, accounts_revision: int = 0
) -> CompanySnapshot:
    return CompanySnapshot(
        accounts_revision=accounts_revision,
        client_id=CLIENT,
        company_id=company,
        company_name=f"Company {company.hex[:4]}",
        refresh_id=refresh,
        currency_code="EUR",
        read_at=read_at,
        web_client_link="https://businesscentral.dynamics.com/t/Production?company=x",
        figures=CompanyFigures(cash=CashFigure(accounts=[], total=Decimal(cash), source="api", read_at=read_at)),
    )


def _requested(refresh: uuid.UUID, company: uuid.UUID | None = None) -> RefreshRequested:
    return RefreshRequested(refresh_id=refresh, client_id=CLIENT, connection=CONNECTION, company_id=company)


def _discovered(refresh: uuid.UUID, *companies: uuid.UUID, about: uuid.UUID | None = None) -> CompaniesDiscovered:
    found = [DiscoveredCompany(company_id=company, name=company.hex[:4]) for company in companies]
    return CompaniesDiscovered(client_id=CLIENT, refresh_id=refresh, companies=found, refresh_company_id=about)


def _company_failed(company: uuid.UUID, at: datetime, refresh: uuid.UUID = FIRST_REFRESH) -> RefreshFailed:
    return RefreshFailed(
        refresh_id=refresh, client_id=CLIENT, company_id=company, failure=_failure(FailureKind.NO_COMPANY_ACCESS, at)
    )


def _deferred(at: datetime, company: uuid.UUID | None = None, refresh: uuid.UUID = FIRST_REFRESH) -> RefreshDeferred:
    return RefreshDeferred(
        refresh_id=refresh,
        client_id=CLIENT,
        company_id=company,
        failure=_failure(FailureKind.THROTTLED, at),
        attempt=1,
        next_attempt_at=at + timedelta(minutes=5),
    )


def _client_with_companies() -> Log:
    """Contoso, added and refreshed once: companies A and B discovered, nothing read yet."""
    log = Log()
    log.add(
        ClientAdded(
            client_id=CLIENT,
            card=ClientCard(name="Contoso", client_url="https://businesscentral.dynamics.com/contoso.example"),
            connection=CONNECTION,
            source=ClientSource.MANUAL,
        )
    )
    log.add(_requested(FIRST_REFRESH))
    log.add(_discovered(FIRST_REFRESH, COMPANY_A, COMPANY_B), at=T0 + timedelta(seconds=1))
    return log


def _company(model: ModelState, company_id: uuid.UUID) -> CompanyState:
    company = model.company(CLIENT, company_id)
    assert company is not None
    return company


def _cash(company: CompanyState) -> Decimal | None:
    """The cash the company's row shows, once the store writes the figures read."""
    assert company.read_figures is not None and company.read_figures.cash is not None
    return company.read_figures.cash.total


def _client(model: ModelState) -> ClientState:
    return model.clients[CLIENT]


def _rows(model: ModelState) -> dict[str, Any]:
    """Everything the store would write, to compare two models."""
    return {
        "clients": copy.deepcopy(model.clients),
        "companies": copy.deepcopy(model.companies),
        "company_rates": copy.deepcopy(model.company_rates),
        "refreshes": copy.deepcopy(model.refreshes),
        "failures": copy.deepcopy(model.failures.entries),
        "tenant_access": copy.deepcopy(model.tenant_access),
        "positions": dict(model.positions),
    }


# ---------------------------------------------------------------- the table


def test_every_event_type_of_the_catalogue_is_ruled_or_deliberately_ignored() -> None:
    assert not set(RULES) & IGNORED_EVENT_TYPES
    assert set(RULES) | IGNORED_EVENT_TYPES == set(EVENT_TYPES), "give a new event type a rule, or ignore it"


@pytest.mark.parametrize("event_type", sorted(RULES))
def test_each_rule_is_named_after_its_event_type(event_type: str) -> None:
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", event_type).lower()
    assert RULES[event_type].__name__ == f"apply_{snake}"


@pytest.mark.parametrize("stored", STORED, ids=lambda stored: stored.table.name)
def test_each_state_has_exactly_its_table_columns(stored: Any) -> None:
    columns = {column.name for column in stored.table.columns}
    names = {item.name for item in fields(stored.state)}
    if stored.state is CompanyState:
        figure_columns = {column for column in columns if column.startswith("figure_")}
        names = (names - {"figures", "read_figures"}) | figure_columns
    assert names == columns


# ---------------------------------------------------------------- queued → refreshing → ok / failed


def test_a_new_client_is_queued_and_its_discovered_companies_are_refreshing() -> None:
    log = _client_with_companies()
    added = log.events[0]
    assert _client(_folded(added)).state == RowState.QUEUED
    model = _folded(*log.events)
    assert _client(model).state == RowState.OK, "its BC answered"
    assert {company.state for company in model.all_companies()} == {RowState.REFRESHING}
    assert model.refreshes[FIRST_REFRESH].companies_found == 2


@pytest.mark.parametrize(
    ("outcome", "state", "failure_entries"),
    [
        pytest.param(_snapshot(COMPANY_A, "10.00", T0 + timedelta(minutes=1)), RowState.OK, 0, id="snapshot"),
        pytest.param(_company_failed(COMPANY_A, T0 + timedelta(minutes=1)), RowState.FAILED, 1, id="failed"),
        pytest.param(_deferred(T0 + timedelta(minutes=1), COMPANY_A), RowState.WAITING, 1, id="deferred"),
    ],
)
def test_a_refreshing_company_ends_with_its_outcome(outcome: EventData, state: str, failure_entries: int) -> None:
    log = _client_with_companies()
    log.add(outcome)
    model = _folded(*log.events)
    assert _company(model, COMPANY_A).state == state
    assert _company(model, COMPANY_B).state == RowState.REFRESHING
    assert len(model.failures.entries) == failure_entries


def test_a_new_refresh_queues_the_companies_again() -> None:
    log = _client_with_companies()
    log.add(_snapshot(COMPANY_A, "10.00", T0 + timedelta(minutes=1)))
    log.add(_requested(SECOND_REFRESH), at=T0 + timedelta(minutes=2))
    model = _folded(*log.events)
    assert _client(model).state == RowState.QUEUED
    assert {company.state for company in model.all_companies()} == {RowState.QUEUED}
    assert _cash(_company(model, COMPANY_A)) == Decimal("10.00"), "the figures stay"


def test_a_refresh_of_one_company_leaves_the_others_and_the_client_alone() -> None:
    log = _client_with_companies()
    log.add(_snapshot(COMPANY_A, "10.00", T0 + timedelta(minutes=1)))
    log.add(_snapshot(COMPANY_B, "20.00", T0 + timedelta(minutes=1)))
    log.add(_requested(SECOND_REFRESH, COMPANY_A), at=T0 + timedelta(minutes=2))
    log.add(_discovered(SECOND_REFRESH, COMPANY_A, COMPANY_B), at=T0 + timedelta(minutes=2))
    model = _folded(*log.events)
    assert _company(model, COMPANY_A).state == RowState.REFRESHING
    assert _company(model, COMPANY_B).state == RowState.OK
    assert model.refreshes[SECOND_REFRESH].companies_found == 1


def test_a_refresh_of_one_company_discovered_before_its_request_is_applied_touches_only_it() -> None:
    """Another gateway replica has the request: the discovery alone says which company the
    refresh is about, so the sibling stays OK and the run waits for one company, not two."""
    log = _client_with_companies()
    log.add(_snapshot(COMPANY_A, "10.00", T0 + timedelta(minutes=1)))
    log.add(_snapshot(COMPANY_B, "20.00", T0 + timedelta(minutes=1)))
    request = log.add(_requested(SECOND_REFRESH, COMPANY_A), at=T0 + timedelta(minutes=2))
    discovery = log.add(
        _discovered(SECOND_REFRESH, COMPANY_A, COMPANY_B, about=COMPANY_A), at=T0 + timedelta(minutes=2)
    )
    before_the_request = _folded(*log.events[:-2], discovery)
    assert _company(before_the_request, COMPANY_A).state == RowState.REFRESHING
    assert _company(before_the_request, COMPANY_B).state == RowState.OK
    assert before_the_request.refreshes[SECOND_REFRESH].companies_found == 1
    assert _rows(_folded(*log.events[:-2], discovery, request)) == _rows(_folded(*log.events))


@pytest.mark.parametrize("outcome", ["failed", "waiting"])
def test_a_refresh_of_one_company_failing_before_its_request_is_applied_touches_only_it(outcome: str) -> None:
    """Its client's BC failed before any company was read: the failure is the whole
    client's, but the refresh was about one company, and the sibling stays as it was."""
    log = _client_with_companies()
    log.add(_snapshot(COMPANY_A, "10.00", T0 + timedelta(minutes=1)))
    log.add(_snapshot(COMPANY_B, "20.00", T0 + timedelta(minutes=1)))
    request = log.add(_requested(SECOND_REFRESH, COMPANY_A), at=T0 + timedelta(minutes=2))
    failure = _failure(FailureKind.CREDENTIALS_REJECTED, T0 + timedelta(minutes=3))
    ended: EventData = (
        RefreshFailed(refresh_id=SECOND_REFRESH, client_id=CLIENT, failure=failure, refresh_company_id=COMPANY_A)
        if outcome == "failed"
        else RefreshDeferred(
            refresh_id=SECOND_REFRESH,
            client_id=CLIENT,
            failure=failure,
            attempt=1,
            next_attempt_at=T0 + timedelta(minutes=8),
            refresh_company_id=COMPANY_A,
        )
    )
    event = log.add(ended, at=T0 + timedelta(minutes=3))
    before_the_request = _folded(*log.events[:-2], event)
    assert _company(before_the_request, COMPANY_A).state == (
        RowState.FAILED if outcome == "failed" else RowState.WAITING
    )
    assert _company(before_the_request, COMPANY_B).state == RowState.OK
    assert _rows(_folded(*log.events[:-2], event, request)) == _rows(_folded(*log.events))


def test_a_refreshs_own_request_and_discovery_arriving_after_its_outcome_do_not_undo_it() -> None:
    log = _client_with_companies()
    snapshot = log.add(_snapshot(COMPANY_A, "10.00", T0 + timedelta(minutes=1), SECOND_REFRESH))
    request = log.add(_requested(SECOND_REFRESH), at=T0 + timedelta(minutes=2))
    discovery = log.add(_discovered(SECOND_REFRESH, COMPANY_A, COMPANY_B), at=T0 + timedelta(minutes=2))
    model = _folded(*log.events[:3], snapshot, request, discovery)
    assert _company(model, COMPANY_A).state == RowState.OK
    assert _company(model, COMPANY_B).state == RowState.REFRESHING


# ---------------------------------------------------------------- apply if newer, once


def test_an_older_snapshot_does_not_overwrite_a_newer_one() -> None:
    log = _client_with_companies()
    log.add(_snapshot(COMPANY_A, "250.00", T0 + timedelta(minutes=5)))
    log.add(_snapshot(COMPANY_A, "1.00", T0 - timedelta(hours=1)))
    company = _company(_folded(*log.events), COMPANY_A)
    assert _cash(company) == Decimal("250.00")
    assert company.as_of == T0 + timedelta(minutes=5)


def test_snapshots_stored_in_another_order_than_read_show_the_last_read_whichever_is_applied_first() -> None:
    """Two fetchers read the same company for two refreshes; the one that read it last
    published first, so its snapshot has the lower stream sequence. Replicas sharing the
    consumer (or a redelivery) may apply either first: the row shows the last read."""
    log = _client_with_companies()
    read_last = log.add(_snapshot(COMPANY_A, "250.00", T0 + timedelta(minutes=5), SECOND_REFRESH))
    read_first = log.add(_snapshot(COMPANY_A, "100.00", T0 + timedelta(minutes=4), FIRST_REFRESH))
    assert read_last.sequence < read_first.sequence
    prefix = log.events[:-2]
    for name, order in (("stream order", (read_last, read_first)), ("swapped", (read_first, read_last))):
        company = _company(_folded(*prefix, *order), COMPANY_A)
        shown = (company.outcome_refresh_id, _cash(company), company.as_of, company.snapshot_sequence)
        assert shown == (SECOND_REFRESH, Decimal("250.00"), T0 + timedelta(minutes=5), read_last.sequence), name


def test_figures_of_the_cards_newer_account_numbers_show_whichever_snapshot_is_applied_first() -> None:
    log = _client_with_companies()
    newer_numbers = log.add(
        _snapshot(COMPANY_A, "300.00", T0 + timedelta(minutes=1), SECOND_REFRESH, accounts_revision=1)
    )
    older_numbers = log.add(
        _snapshot(COMPANY_A, "999.00", T0 + timedelta(minutes=2), FIRST_REFRESH, accounts_revision=0)
    )
    prefix = log.events[:-2]
    for name, order in (("stream order", (newer_numbers, older_numbers)), ("swapped", (older_numbers, newer_numbers))):
        company = _company(_folded(*prefix, *order), COMPANY_A)
        assert (_cash(company), company.accounts_revision) == (Decimal("300.00"), 1), name
        assert company.outcome_refresh_id == FIRST_REFRESH, name


def test_snapshots_read_at_the_same_instant_show_the_one_stored_last_in_either_order() -> None:
    log = _client_with_companies()
    stored_first = log.add(_snapshot(COMPANY_A, "1.00", T0 + timedelta(minutes=5), FIRST_REFRESH))
    stored_last = log.add(_snapshot(COMPANY_A, "2.00", T0 + timedelta(minutes=5), SECOND_REFRESH))
    prefix = log.events[:-2]
    for name, order in (("stream order", (stored_first, stored_last)), ("swapped", (stored_last, stored_first))):
        company = _company(_folded(*prefix, *order), COMPANY_A)
        assert (_cash(company), company.snapshot_sequence) == (Decimal("2.00"), stored_last.sequence), name


def test_figures_made_with_the_cards_older_account_numbers_never_replace_newer_ones() -> None:
    """The accountant named the cash accounts (revision 1) while the first refresh (revision 0)
    was still reading: whichever reads BC last, the card's numbers win; within one revision,
    the newest read."""
    log = _client_with_companies()
    log.add(_snapshot(COMPANY_A, "300.00", T0 + timedelta(minutes=1), SECOND_REFRESH, accounts_revision=1))
    log.add(_snapshot(COMPANY_A, "999.00", T0 + timedelta(minutes=2), FIRST_REFRESH, accounts_revision=0))
    company = _company(_folded(*log.events), COMPANY_A)
    assert (_cash(company), company.accounts_revision) == (Decimal("300.00"), 1)
    assert company.as_of == T0 + timedelta(minutes=1)

    log.add(_snapshot(COMPANY_A, "310.00", T0 + timedelta(minutes=3), uuid.uuid4(), accounts_revision=1))
    log.add(_snapshot(COMPANY_A, "305.00", T0 + timedelta(seconds=90), uuid.uuid4(), accounts_revision=1))
    assert _cash(_company(_folded(*log.events), COMPANY_A)) == Decimal("310.00")
    # A newer revision shows even when it read BC before the figures shown.
    log.add(_snapshot(COMPANY_A, "42.00", T0 + timedelta(minutes=2), uuid.uuid4(), accounts_revision=2))
    company = _company(_folded(*log.events), COMPANY_A)
    assert (_cash(company), company.accounts_revision) == (Decimal("42.00"), 2)


def test_a_snapshot_made_with_older_account_numbers_still_ends_its_refreshs_wait() -> None:
    """The first refresh waited for a retry after the card's new numbers were read: its read
    ends the wait, though its figures do not replace those made with the card's numbers."""
    log = _client_with_companies()
    log.add(_snapshot(COMPANY_A, "300.00", T0 + timedelta(minutes=3), SECOND_REFRESH, accounts_revision=1))
    log.add(_deferred(T0 + timedelta(minutes=4), COMPANY_A))
    log.add(_snapshot(COMPANY_A, "999.00", T0 + timedelta(minutes=5), FIRST_REFRESH, accounts_revision=0))
    model = _folded(*log.events)
    company = _company(model, COMPANY_A)
    assert (company.state, company.outcome_refresh_id, company.next_attempt_at) == (RowState.OK, FIRST_REFRESH, None)
    assert _cash(company) == Decimal("300.00")
    assert not [f for f in model.failures.entries.values() if f.next_attempt_at is not None], "the wait ended"


def _moved_to(environment: str, moved_revision: int) -> ClientUpdated:
    return ClientUpdated(
        client_id=CLIENT,
        card=ClientCard(
            name="Contoso", client_url=f"https://businesscentral.dynamics.com/contoso.example/{environment}"
        ),
        connection=ClientConnection(tenant="contoso.example", environment=environment),
        moved_revision=moved_revision,
    )


@pytest.mark.parametrize("new_read_first", [False, True])
def test_a_card_moved_to_another_environment_keeps_none_of_the_old_ones_companies(new_read_first: bool) -> None:
    """A Client URL corrected to another environment (or tenant): the old one's companies
    and figures stayed on the dashboard under the card, for good when the new tenant gave no
    access; and a refresh of the old one still under way, or tried again, after the move
    (its outcomes carry the card revision it was asked at) put them back, or listed them
    over the new one's."""
    log = _client_with_companies()
    log.add(_snapshot(COMPANY_A, "100", T0 + timedelta(minutes=1)))
    company_c = uuid.uuid4()
    moved_at = T0 + timedelta(minutes=10)
    new_read = _snapshot(company_c, "7", T0 + timedelta(minutes=11), SECOND_REFRESH, accounts_revision=1)
    log.add(_moved_to("production", 0), at=moved_at - timedelta(minutes=5))  # the same, in another case: no move
    move = log.add(_moved_to("Sandbox", 1), at=moved_at)
    stale = [
        log.add(_snapshot(COMPANY_B, "50", T0 + timedelta(minutes=2))),  # read before the move
        log.add(_snapshot(COMPANY_B, "60", T0 + timedelta(minutes=20))),  # an old refresh, read after it
        log.add(_discovered(FIRST_REFRESH, COMPANY_A, COMPANY_B), at=T0 + timedelta(minutes=21)),
        log.add(_company_failed(COMPANY_A, T0 + timedelta(minutes=22))),
    ]
    if new_read_first:  # the snapshots' stream ahead of the events'
        events = [e for e in log.events if e is not move and e not in stale]
        model = _folded(*events, log.add(new_read), move, *stale)
    else:
        model = _folded(*log.events, log.add(new_read))
    assert set(model.companies_of(CLIENT)) == {company_c}
    assert _cash(_company(model, company_c)) == Decimal(7)
    assert (CLIENT, COMPANY_A) not in model.company_rates


def test_a_move_is_learnt_from_any_later_update_whichever_a_replica_applies_first() -> None:
    """Every update says where the card last moved: a replica that applied a later update
    (a time zone given to every card) before the move skipped the move as older, and kept
    the old place's companies for good."""
    log = _client_with_companies()
    log.add(_snapshot(COMPANY_A, "100", T0 + timedelta(minutes=1)))
    move = log.add(_moved_to("Sandbox", 1), at=T0 + timedelta(minutes=10))
    later = log.add(_moved_to("Sandbox", 1), at=T0 + timedelta(minutes=11))  # the same place, another field
    # The new place's whole-client wait, applied before the move by this replica: it stays.
    waiting = log.add(
        _deferred(T0 + timedelta(minutes=12)).model_copy(update={"refresh_id": SECOND_REFRESH, "accounts_revision": 1}),
        at=T0 + timedelta(minutes=12),
    )
    in_order = _folded(*log.events)
    swapped = _folded(*[e for e in log.events if e not in (move, later, waiting)], waiting, later, move)
    for model in (in_order, swapped):
        assert model.companies_of(CLIENT) == {}
        assert _client(model).moved_revision == 1
        assert [e.company_id for e in model.failures.entries.values() if e.next_attempt_at] == [None]


def test_a_company_of_both_places_stays_when_the_new_ones_outcome_comes_first() -> None:
    """An environment copied from the other keeps its companies' ids: the new place's
    discovery of the same company, applied before the move, left the row at the old
    revision, and the move dropped it until the next refresh."""
    log = _client_with_companies()
    log.add(_snapshot(COMPANY_A, "100", T0 + timedelta(minutes=1)))
    move = log.add(_moved_to("Sandbox", 1), at=T0 + timedelta(minutes=10))
    listed = log.add(_discovered(SECOND_REFRESH, COMPANY_A).model_copy(update={"accounts_revision": 1}))
    for events in (log.events, [e for e in log.events if e is not move] + [move]):
        model = _folded(*events)
        assert set(model.companies_of(CLIENT)) == {COMPANY_A}, events.index(listed)


def test_a_move_ends_the_old_places_waits_and_its_refresh_runs() -> None:
    """A company of the old place waiting for a retry stayed "waiting" in Check Errors for
    good, and a refresh run of the old place counted as still under way."""
    log = _client_with_companies()
    log.add(_deferred(T0 + timedelta(minutes=2), COMPANY_A))
    log.add(_moved_to("Sandbox", 1), at=T0 + timedelta(minutes=10))
    log.add(_company_failed(COMPANY_A, T0 + timedelta(minutes=12)))  # its last try, after the move
    model = _folded(*log.events)
    assert not any(entry.next_attempt_at for entry in model.failures.entries.values())
    assert model.refreshes[FIRST_REFRESH].companies_found == 0


def test_a_move_from_a_registry_of_the_release_before_drops_nothing() -> None:
    """Its ClientUpdated carries no revision: the history it wrote projects as it did."""
    log = _client_with_companies()
    log.add(_snapshot(COMPANY_A, "100", T0 + timedelta(minutes=1)))
    log.add(_moved_to("Sandbox", 0), at=T0 + timedelta(minutes=10))
    assert set(_folded(*log.events).companies_of(CLIENT)) == {COMPANY_A, COMPANY_B}


def test_a_card_saved_without_a_move_keeps_its_companies() -> None:
    log = _client_with_companies()
    log.add(_snapshot(COMPANY_A, "100", T0 + timedelta(minutes=1)))
    log.add(_moved_to("PRODUCTION", 0), at=T0 + timedelta(minutes=10))  # new account numbers, say
    model = _folded(*log.events)
    assert set(model.companies_of(CLIENT)) == {COMPANY_A, COMPANY_B}


def test_a_request_applied_again_or_after_its_discovery_queues_nothing_again() -> None:
    log = _client_with_companies()
    request, discovery = log.events[1], log.events[2]
    model = _folded(*log.events)
    assert {c.state for c in model.all_companies()} == {RowState.REFRESHING}
    _folded(request, model=model)
    assert {c.state for c in model.all_companies()} == {RowState.REFRESHING}, "a redelivered request"
    swapped = _folded(log.events[0], discovery, request)
    assert {c.state for c in swapped.all_companies()} == {RowState.REFRESHING}, "the request applied last"
    assert swapped.refreshes[FIRST_REFRESH].companies_found == 2


def test_an_older_failure_does_not_hide_newer_figures() -> None:
    log = _client_with_companies()
    log.add(_snapshot(COMPANY_B, "42.00", T0 + timedelta(minutes=2)))
    log.add(_company_failed(COMPANY_B, T0 + timedelta(minutes=1)))
    model = _folded(*log.events)
    assert _company(model, COMPANY_B).state == RowState.OK
    assert len(model.failures.entries) == 1, "Check Errors still lists it"


def test_a_redelivered_event_changes_nothing() -> None:
    log = _client_with_companies()
    log.add(_snapshot(COMPANY_A, "10.00", T0 + timedelta(minutes=1)))
    log.add(_deferred(T0 + timedelta(minutes=2), COMPANY_B))
    log.add(_company_failed(COMPANY_B, T0 + timedelta(minutes=3)))
    log.add(ClientRemoved(client_id=CLIENT), at=T0 + timedelta(minutes=4))
    model = _folded(*log.events)
    once = _rows(model)
    _folded(*log.events, model=model)
    for event in reversed(log.events):
        _folded(event, model=model)
    assert _rows(model) == once


def _client_history() -> Log:
    """A client's first hours: its card changed, a schedule of its own, three refreshes (a
    company failing, the whole client failing after a wait, a company gone from BC), then
    removed."""
    log = Log()
    minute = iter(range(1, 100))

    def at() -> datetime:
        return T0 + timedelta(minutes=next(minute))

    card = ClientCard(name="Contoso", client_url="https://businesscentral.dynamics.com/contoso.example")
    log.add(ClientAdded(client_id=CLIENT, card=card, connection=CONNECTION, source=ClientSource.MANUAL))
    third = uuid.uuid4()
    for data in (
        RefreshScheduleSet(client_id=CLIENT, every_minutes=60),
        _requested(FIRST_REFRESH),
        _discovered(FIRST_REFRESH, COMPANY_A, COMPANY_B),
        ClientUpdated(client_id=CLIENT, card=card.model_copy(update={"name": "Contoso Ltd"}), connection=CONNECTION),
        _company_failed(COMPANY_B, T0 + timedelta(minutes=5)),
        _requested(SECOND_REFRESH),
        _deferred(T0 + timedelta(minutes=7), refresh=SECOND_REFRESH),
        RefreshFailed(
            refresh_id=SECOND_REFRESH,
            client_id=CLIENT,
            failure=_failure(FailureKind.TIMEOUT, T0 + timedelta(minutes=8)),
        ),
        _requested(third),
        _discovered(third, COMPANY_A),
        ClientRemoved(client_id=CLIENT),
    ):
        log.add(data, at=at())
    log.add(_snapshot(COMPANY_A, "10.00", T0 + timedelta(minutes=4)))
    log.add(_snapshot(COMPANY_A, "20.00", T0 + timedelta(minutes=12), third))
    return log


def _shown(model: ModelState) -> dict[str, Any]:
    """What the dashboard, Check Errors and the refresh runs show of a model."""
    client = model.clients[CLIENT]
    return {
        "client": (client.card_json, client.removed, client.state, client.failure_json, client.refresh_schedule_json),
        "companies": {
            c.company_id: (c.state, c.outcome_refresh_id, c.failure_json, c.as_of) for c in model.all_companies()
        },
        "refreshes": {
            r.refresh_id: (r.company_id, r.correlation_id, r.companies_found, r.failed)
            for r in model.refreshes.values()
        },
        "failures": sorted(str(failure_id) for failure_id in model.failures.entries),
    }


def test_events_projected_out_of_order_by_replicas_show_the_same() -> None:
    """Gateway replicas share the stream's consumer: one may apply an event before another
    applies the one before it. Whichever two neighbours swap (a client's events follow its
    ClientAdded by far more than a batch), the rows show what the stream's order shows."""
    log = _client_history()
    events = [e for e in log.events if e.stream == EVENTS_STREAM]
    snapshots = [e for e in log.events if e.stream == SNAPSHOTS_STREAM]
    in_order = _shown(_folded(*events, *snapshots))
    for position in range(1, len(events) - 1):
        swapped = [*events[:position], events[position + 1], events[position], *events[position + 2 :]]
        shown = _shown(_folded(*swapped, *snapshots))
        assert shown == in_order, f"{events[position].envelope.type} and {events[position + 1].envelope.type}"


def test_a_client_added_applied_after_any_of_its_later_events_shows_the_same() -> None:
    """A replica that stopped before committing its batch leaves its events to be given
    again, after another replica applied the next ones: a ClientAdded may come after its
    client's card saves, schedule and removal. None of them is lost (a removed client used
    to come back on the dashboard, and a save to be undone by the older card)."""
    log = _client_history()
    events = [e for e in log.events if e.stream == EVENTS_STREAM]
    snapshots = [e for e in log.events if e.stream == SNAPSHOTS_STREAM]
    in_order = _folded(*events, *snapshots)
    assert _client(in_order).removed and json.loads(_client(in_order).card_json)["name"] == "Contoso Ltd"
    for position in range(1, len(events)):
        reordered = [*events[1 : position + 1], events[0], *events[position + 1 :]]
        shown = _folded(*reordered, *snapshots)
        after = f"ClientAdded after {events[position].envelope.type} ({position})"
        assert _client(shown) == _client(in_order), after
        assert _shown(shown) == _shown(in_order), after


def test_a_removal_or_save_applied_before_its_client_added_is_kept() -> None:
    log = Log()
    card = ClientCard(name="Contoso", client_url="https://businesscentral.dynamics.com/contoso.example")
    added = log.add(ClientAdded(client_id=CLIENT, card=card, connection=CONNECTION, source=ClientSource.MANUAL))
    renamed = log.add(
        ClientUpdated(client_id=CLIENT, card=card.model_copy(update={"name": "Contoso Ltd"}), connection=CONNECTION),
        at=T0 + timedelta(seconds=1),
    )
    removed = log.add(ClientRemoved(client_id=CLIENT), at=T0 + timedelta(seconds=2))
    saved_first = _folded(renamed, added)
    assert json.loads(_client(saved_first).card_json)["name"] == "Contoso Ltd"
    assert (_client(saved_first).source, _client(saved_first).added_at) == ("manual", T0)
    assert _client(_folded(removed, added)).removed
    assert _client(_folded(removed, renamed, added)) == _client(_folded(added, renamed, removed))
    # Another firm's removal of the id keeps nothing the firm's ClientAdded would take.
    other = Log()
    foreign = other.add(ClientRemoved(client_id=CLIENT), firm=OTHER_FIRM)
    model = _folded(foreign)
    assert _client(model).firm_id == OTHER_FIRM and _client(model).removed
    assert _client(_folded(added, model=model)).firm_id == OTHER_FIRM


def test_an_accountant_removed_before_their_join_is_applied_stays_removed() -> None:
    """The read model's removal is what ends a removed accountant's sessions and tokens that
    the gateway could not end at once (accounts/queries.py: access_ended)."""
    log = Log()
    accountant = uuid.uuid4()
    joined = log.add(
        AccountantJoined(accountant_id=accountant, email="kim@woodgrove.example", display_name="Kim", role=Role.STAFF)
    )
    removed = log.add(
        AccountantRemoved(accountant_id=accountant, email="kim@woodgrove.example", removed_by=uuid.uuid4()),
        at=T0 + timedelta(seconds=1),
    )
    in_order = _folded(joined, removed).accountants[accountant]
    swapped = _folded(removed, joined).accountants[accountant]
    assert in_order.removed_at == T0 + timedelta(seconds=1)
    assert swapped == in_order
    rejoined = log.add(
        AccountantJoined(accountant_id=accountant, email="kim@woodgrove.example", display_name="Kim", role=Role.ADMIN),
        firm=OTHER_FIRM,
        at=T0 + timedelta(minutes=1),
    )
    assert (
        _folded(removed, rejoined, joined).accountants[accountant]
        == _folded(joined, removed, rejoined).accountants[accountant]
    )


def test_a_firms_schedule_applied_before_its_creation_is_kept() -> None:
    log = Log()
    created = log.add(FirmCreated(name="Woodgrove Accounting", owner_accountant_id=uuid.uuid4()))
    scheduled = log.add(RefreshScheduleSet(every_minutes=60), at=T0 + timedelta(seconds=5))
    in_order = _folded(created, scheduled).firms[FIRM]
    assert in_order.refresh_schedule_json is not None and in_order.name == "Woodgrove Accounting"
    assert _folded(scheduled, created).firms[FIRM] == in_order


def _first_refresh_outcomes(refresh: uuid.UUID) -> dict[str, list[EventData]]:
    """What a ClientAdded's own first refresh may say about the client, in stream order."""
    minute = timedelta(minutes=1)
    failed = RefreshFailed(
        refresh_id=refresh, client_id=CLIENT, failure=_failure(FailureKind.CREDENTIALS_REJECTED, T0 + minute)
    )
    return {
        "failed": [failed],
        "waiting": [_deferred(T0 + minute, refresh=refresh)],
        "found": [_discovered(refresh, COMPANY_A)],
        "waiting, then found": [_deferred(T0 + minute, refresh=refresh), _discovered(refresh, COMPANY_A)],
        "waiting, then failed": [_deferred(T0 + minute, refresh=refresh), failed],
    }


@pytest.mark.parametrize("outcomes", ["failed", "waiting", "found", "waiting, then found", "waiting, then failed"])
def test_a_first_refreshs_outcome_applied_before_its_client_added_shows_the_same(outcomes: str) -> None:
    """The fetcher answers a ClientAdded at once (a wrong Client URL fails in a second), so
    its outcome may be the very next event, which another gateway replica may apply first."""
    log = Log()
    card = ClientCard(name="Contoso", client_url="https://businesscentral.dynamics.com/contoso.example")
    added = log.add(ClientAdded(client_id=CLIENT, card=card, connection=CONNECTION, source=ClientSource.MANUAL))
    refresh = first_refresh_id(added.envelope)
    for outcome in _first_refresh_outcomes(refresh)[outcomes]:
        log.add(outcome, at=T0 + timedelta(minutes=1))
    in_order = _folded(*log.events)
    for position in range(1, len(log.events)):
        # The ClientAdded applied after its position-th follower (replicas' batches).
        reordered = [*log.events[1 : position + 1], log.events[0], *log.events[position + 1 :]]
        shown = _folded(*reordered)
        client, expected = _client(shown), _client(in_order)
        assert (client.state, client.failure_json, client.next_attempt_at) == (
            expected.state,
            expected.failure_json,
            expected.next_attempt_at,
        ), f"ClientAdded after {position} of its refresh's outcomes"
        assert _shown(shown)["refreshes"] == _shown(in_order)["refreshes"]
        assert _shown(shown)["failures"] == _shown(in_order)["failures"]
    assert _client(in_order).state == {"failed": RowState.FAILED, "waiting": RowState.WAITING}.get(
        outcomes.rsplit(" ", 1)[-1], RowState.OK
    )


def test_events_of_another_firm_cannot_touch_a_client() -> None:
    log = _client_with_companies()
    log.add(_snapshot(COMPANY_A, "10.00", T0 + timedelta(minutes=1)))
    log.add(ClientRemoved(client_id=CLIENT), firm=OTHER_FIRM)
    log.add(_snapshot(COMPANY_A, "9.99", T0 + timedelta(hours=1)), firm=OTHER_FIRM)
    model = _folded(*log.events)
    assert not _client(model).removed
    assert _cash(_company(model, COMPANY_A)) == Decimal("10.00")


# ---------------------------------------------------------------- failures: a client, or one company


def test_a_refresh_failed_for_the_whole_client_fails_every_company_of_the_refresh() -> None:
    log = _client_with_companies()
    log.add(
        RefreshFailed(
            refresh_id=FIRST_REFRESH,
            client_id=CLIENT,
            failure=_failure(FailureKind.CREDENTIALS_REJECTED, T0 + timedelta(minutes=1)),
        )
    )
    model = _folded(*log.events)
    assert _client(model).state == RowState.FAILED
    assert {company.state for company in model.all_companies()} == {RowState.FAILED}
    assert model.refreshes[FIRST_REFRESH].failed
    [entry] = model.failures.entries.values()
    assert (entry.company_id, entry.tenant, entry.kind) == (None, "contoso.example", "credentials_rejected")
    assert model.changes.firms_with_new_failures == {FIRM}


def test_a_refresh_failed_for_one_company_fails_only_that_company() -> None:
    log = _client_with_companies()
    log.add(_company_failed(COMPANY_B, T0 + timedelta(minutes=1)))
    model = _folded(*log.events)
    assert _client(model).state == RowState.OK
    assert _company(model, COMPANY_A).state == RowState.REFRESHING
    assert _company(model, COMPANY_B).state == RowState.FAILED
    assert not model.refreshes[FIRST_REFRESH].failed


def test_a_client_level_failure_before_its_client_is_known_is_listed_but_changes_no_row() -> None:
    model = _folded(
        Log().add(
            RefreshFailed(
                refresh_id=FIRST_REFRESH, client_id=CLIENT, failure=_failure(FailureKind.TENANT_NOT_FOUND, T0)
            )
        )
    )
    assert not model.clients
    assert not list(model.all_companies())
    assert len(model.failures.entries) == 1


# ---------------------------------------------------------------- waiting for a retry


def test_a_deferred_client_waits_until_its_bc_answers() -> None:
    log = _client_with_companies()
    log.add(_requested(SECOND_REFRESH), at=T0 + timedelta(minutes=1))
    log.add(_deferred(T0 + timedelta(minutes=2), refresh=SECOND_REFRESH), at=T0 + timedelta(minutes=2))
    waiting = _folded(*log.events)
    assert _client(waiting).state == RowState.WAITING
    assert _client(waiting).next_attempt_at == T0 + timedelta(minutes=7)
    assert {company.state for company in waiting.all_companies()} == {RowState.WAITING}
    [entry] = waiting.failures.entries.values()
    assert entry.next_attempt_at == T0 + timedelta(minutes=7)

    log.add(_discovered(SECOND_REFRESH, COMPANY_A, COMPANY_B), at=T0 + timedelta(minutes=7))
    answered = _folded(*log.events)
    assert _client(answered).state == RowState.OK
    assert not answered.failures.entries, "the wait ended"


def test_a_company_waits_until_a_later_outcome_and_an_older_one_does_not_end_the_wait() -> None:
    log = _client_with_companies()
    log.add(_deferred(T0 + timedelta(minutes=2), COMPANY_A))
    log.add(_snapshot(COMPANY_A, "5.00", T0 + timedelta(minutes=1)))  # read before the wait began
    model = _folded(*log.events)
    assert _company(model, COMPANY_A).state == RowState.WAITING
    assert _cash(_company(model, COMPANY_A)) == Decimal("5.00"), "the figures show"
    assert len(model.failures.entries) == 1

    retried = Log()
    retried.sequences = dict(log.sequences)
    retried.add(_snapshot(COMPANY_A, "6.00", T0 + timedelta(minutes=8)))
    model.changes.firms_with_new_failures.clear()
    _folded(*retried.events, model=model)
    assert _company(model, COMPANY_A).state == RowState.OK
    assert not model.failures.entries
    assert model.changes.firms_with_new_failures == {FIRM}, "Check Errors lost the wait"


def test_a_second_wait_replaces_the_first() -> None:
    log = _client_with_companies()
    first = log.add(_deferred(T0 + timedelta(minutes=1), COMPANY_A))
    second = log.add(_deferred(T0 + timedelta(minutes=6), COMPANY_A))
    model = _folded(*log.events)
    assert set(model.failures.entries) == {second.envelope.id}
    assert first.envelope.id not in model.failures


# ---------------------------------------------------------------- exchange rates


def _with_rates(snapshot: CompanySnapshot, rates: ExchangeRates | None) -> CompanySnapshot:
    return snapshot.model_copy(update={"exchange_rates": rates})


def _rates(**lcy_per_unit: str | None) -> ExchangeRates:
    return ExchangeRates(
        as_of=T0.date(),
        rates=[
            ExchangeRate(
                currency_code=code, lcy_per_unit=None if rate is None else Decimal(rate), starting_date=T0.date()
            )
            for code, rate in lcy_per_unit.items()
        ],
    )


def _rate_codes(model: ModelState, company: uuid.UUID) -> dict[str, Decimal | None]:
    return {code: rate.lcy_per_unit for code, rate in model.company_rates.get((CLIENT, company), {}).items()}


def test_a_newer_snapshot_replaces_a_companys_rates_and_says_why_when_there_are_none() -> None:
    log = _client_with_companies()
    log.add(_with_rates(_snapshot(COMPANY_A, "10", T0 + timedelta(minutes=1)), _rates(USD="0.79", GBP=None)))
    model = _folded(*log.events)
    assert _rate_codes(model, COMPANY_A) == {"USD": Decimal("0.79"), "GBP": None}
    assert _company(model, COMPANY_A).exchange_rates_read

    # An older snapshot arriving late changes nothing; a newer one replaces every rate.
    log.add(_with_rates(_snapshot(COMPANY_A, "9", T0), _rates(SEK="0.08")))
    assert _rate_codes(_folded(*log.events), COMPANY_A) == {"USD": Decimal("0.79"), "GBP": None}
    log.add(_with_rates(_snapshot(COMPANY_A, "11", T0 + timedelta(minutes=2)), _rates(EUR="0.85")))
    assert _rate_codes(_folded(*log.events), COMPANY_A) == {"EUR": Decimal("0.85")}

    unavailable = ExchangeRates(as_of=T0.date(), unavailable="currencyExchangeRates (HTTP 404): not found")
    log.add(_with_rates(_snapshot(COMPANY_A, "12", T0 + timedelta(minutes=3)), unavailable))
    model = _folded(*log.events)
    company = _company(model, COMPANY_A)
    assert _rate_codes(model, COMPANY_A) == {} and not company.exchange_rates_read
    assert company.exchange_rates_unavailable == "currencyExchangeRates (HTTP 404): not found"

    # A snapshot from before the hub read rates: none, and no reason either (not read).
    log.add(_with_rates(_snapshot(COMPANY_A, "13", T0 + timedelta(minutes=4)), None))
    company = _company(_folded(*log.events), COMPANY_A)
    assert not company.exchange_rates_read and company.exchange_rates_unavailable is None


def test_a_company_gone_from_bc_takes_its_rates_along() -> None:
    log = _client_with_companies()
    log.add(_with_rates(_snapshot(COMPANY_B, "10", T0 + timedelta(minutes=1)), _rates(USD="0.79")))
    log.add(_requested(SECOND_REFRESH), at=T0 + timedelta(minutes=2))
    log.add(_discovered(SECOND_REFRESH, COMPANY_A), at=T0 + timedelta(minutes=2))
    assert (CLIENT, COMPANY_B) not in _folded(*log.events).company_rates


# ---------------------------------------------------------------- removal, access, ignored events


def test_a_removed_client_and_a_company_gone_from_bc() -> None:
    log = _client_with_companies()
    log.add(_requested(SECOND_REFRESH), at=T0 + timedelta(minutes=1))
    log.add(_discovered(SECOND_REFRESH, COMPANY_A), at=T0 + timedelta(minutes=1))
    model = _folded(*log.events)
    assert set(model.companies_of(CLIENT)) == {COMPANY_A}, "B is gone from the client's BC"
    log.add(ClientRemoved(client_id=CLIENT))
    assert _client(_folded(*log.events)).removed


def test_a_company_gone_from_bc_is_not_brought_back_by_an_older_snapshot_applied_late_or_again() -> None:
    """The snapshots' projection may lag the events' (they are two streams): B's last read,
    from before the client's next list of companies left it out, is applied after that list,
    and may be delivered again. B stays gone; a read after the list (B back in BC) shows."""
    log = _client_with_companies()
    old_read = log.add(_snapshot(COMPANY_B, "5.00", T0 + timedelta(minutes=2)))
    events = [event for event in log.events if event.stream == EVENTS_STREAM]
    log.add(_requested(SECOND_REFRESH), at=T0 + timedelta(minutes=4))
    log.add(_discovered(SECOND_REFRESH, COMPANY_A), at=T0 + timedelta(minutes=4))
    listed_after = [event for event in log.events if event.stream == EVENTS_STREAM]
    for name, order in (
        ("in stream order", [*events, old_read, *listed_after[len(events) :]]),
        ("the snapshot late", [*listed_after, old_read]),
        ("the snapshot again", [*events, old_read, *listed_after[len(events) :], old_read]),
    ):
        assert set(_folded(*order).companies_of(CLIENT)) == {COMPANY_A}, name
    back = log.add(_snapshot(COMPANY_B, "7.00", T0 + timedelta(minutes=6), uuid.uuid4()))
    assert _cash(_company(_folded(*listed_after, old_read, back), COMPANY_B)) == Decimal("7.00")
    # A list of one company's refresh says nothing of the others.
    scoped = Log()
    for event in _client_with_companies().events:
        scoped.add(event.data, at=event.envelope.occurred_at)
    third = uuid.uuid4()
    scoped.add(_requested(third, COMPANY_A), at=T0 + timedelta(minutes=4))
    scoped.add(_discovered(third, COMPANY_A, about=COMPANY_A), at=T0 + timedelta(minutes=4))
    assert _client(_folded(*scoped.events)).companies_listed_at == T0 + timedelta(seconds=1)


def test_an_older_list_applied_after_a_newer_companys_snapshot_leaves_it() -> None:
    """Company C is made in BC after the first list; a later refresh lists it and reads it.
    With the events' projection lagging, C's snapshot is applied before the first list,
    which does not name C: C keeps its figures, as in stream order."""
    company_c = uuid.uuid4()
    log = _client_with_companies()
    log.add(_requested(SECOND_REFRESH), at=T0 + timedelta(minutes=2))
    log.add(_discovered(SECOND_REFRESH, COMPANY_A, COMPANY_B, company_c), at=T0 + timedelta(minutes=2))
    read_c = log.add(_snapshot(company_c, "9.00", T0 + timedelta(minutes=3), SECOND_REFRESH))
    events = [event for event in log.events if event.stream == EVENTS_STREAM]
    in_order = _folded(*log.events)
    lagging = _folded(*events[:2], read_c, *events[2:])
    assert _company(lagging, company_c).state == RowState.OK
    assert _cash(_company(lagging, company_c)) == Decimal("9.00")
    assert _rows(lagging)["companies"] == _rows(in_order)["companies"]


def test_a_company_gone_from_bc_takes_its_wait_for_a_retry_out_of_check_errors() -> None:
    log = _client_with_companies()
    log.add(_deferred(T0 + timedelta(minutes=1), COMPANY_B))
    assert len(_folded(*log.events).failures.entries) == 1
    log.add(_requested(SECOND_REFRESH), at=T0 + timedelta(minutes=2))
    log.add(_discovered(SECOND_REFRESH, COMPANY_A), at=T0 + timedelta(minutes=2))
    model = _folded(*log.events)
    assert set(model.companies_of(CLIENT)) == {COMPANY_A}
    assert not model.failures.entries, "B's retry will never come: nothing says so any more"


def test_a_gone_companys_failure_or_wait_stored_after_the_list_brings_no_row_back() -> None:
    """B's last attempt ended before the list that left B out, but its event was stored
    after it: the failure stays in Check Errors' history, the wait is over, no row returns."""
    log = _client_with_companies()
    log.add(_requested(SECOND_REFRESH), at=T0 + timedelta(minutes=2))
    log.add(_discovered(SECOND_REFRESH, COMPANY_A), at=T0 + timedelta(minutes=2))
    log.add(_deferred(T0 + timedelta(minutes=1), COMPANY_B))
    waited = _folded(*log.events)
    assert set(waited.companies_of(CLIENT)) == {COMPANY_A}
    assert not waited.failures.entries
    log.add(_company_failed(COMPANY_B, T0 + timedelta(minutes=1, seconds=30)))
    failed = _folded(*log.events)
    assert set(failed.companies_of(CLIENT)) == {COMPANY_A}
    assert len(failed.failures.entries) == 1
    # Something of B after the list (B back in BC) still shows.
    log.add(_company_failed(COMPANY_B, T0 + timedelta(minutes=3)))
    assert _company(_folded(*log.events), COMPANY_B).state == RowState.FAILED


def test_tenant_access_granted_then_revoked_and_a_stale_grant_ignored() -> None:
    log = Log()
    grant = log.add(TenantAccessGranted(tenant_id=TENANT_ID, tenant="t.example", method=GrantMethod.CONNECT))
    log.add(TenantAccessRevoked(tenant_id=TENANT_ID, tenant="t.example", reason="consent withdrawn"))
    model = _folded(*log.events, grant)
    access = model.tenant_access[(FIRM, TENANT_ID)]
    assert (access.granted, access.method, access.reason) == (False, "connect", "consent withdrawn")


def test_an_ignored_event_only_advances_its_stream() -> None:
    event = Log().add(InvitationRejected(invitation_id=uuid.uuid4(), reason="no"))
    model = _folded(event)
    assert model.positions == {EVENTS_STREAM: 1}
    assert not model.clients
    assert not model.changes.clients_by_firm


def test_the_store_writes_the_figures_read_once_as_columns_and_json() -> None:
    log = _client_with_companies()
    log.add(_snapshot(COMPANY_A, "1.00", T0 + timedelta(minutes=1)))
    log.add(_snapshot(COMPANY_A, "2.50", T0 + timedelta(minutes=2)))
    row = COMPANIES.to_row(_company(_folded(*log.events), COMPANY_A))
    assert row["figure_cash"] == Decimal("2.50")
    assert json.loads(row["figures_json"])["cash"]["total"] == "2.50"
    assert COMPANIES.to_row(COMPANIES.to_state(row)) == row, "a stored row reads back as itself"


# ---------------------------------------------------------------- alerts


def _raised(episode: uuid.UUID) -> AlertRaised:
    return AlertRaised(
        episode_id=episode,
        rule_id=uuid.uuid4(),
        rule_name="Cash running low",
        client_id=CLIENT,
        client_name="Client",
        company_id=COMPANY_A,
        company_name="Company A",
        figure="cash",
        comparison="below",
        threshold=Decimal("100"),
        value=Decimal("10.00"),
        currency_code="EUR",
        started_at=T0,
        recipient=AlertRecipient(accountant_id=uuid.uuid4(), email="a@b.example", display_name="A"),
        email=True,
    )


def _resolved(raised: AlertRaised) -> AlertResolved:
    return AlertResolved(
        episode_id=raised.episode_id,
        rule_id=raised.rule_id,
        client_id=CLIENT,
        company_id=COMPANY_A,
        value=Decimal("200"),
        ended_at=T0 + timedelta(hours=1),
        reason="no_longer_holds",
    )


def test_an_alert_is_open_from_its_start_until_its_end_in_either_order_and_once() -> None:
    log = Log()
    raised = _raised(uuid.uuid4())
    start, end = log.add(raised), log.add(_resolved(raised))
    in_order = _folded(start, end).alerts[raised.episode_id]
    assert (in_order.started_at, in_order.ended_at, in_order.value) == (T0, T0 + timedelta(hours=1), "10.00")
    # The end redelivered before its start (a nacked batch), and each again: the same row.
    reordered = _folded(end, start, end, start).alerts[raised.episode_id]
    assert reordered == in_order
    # Another firm's end cannot close this firm's alert.
    other = Log()
    other.sequences = dict(log.sequences)
    foreign = other.add(_resolved(raised), firm=OTHER_FIRM)
    assert _folded(start, foreign).alerts[raised.episode_id].ended_at is None


def _checked(company: uuid.UUID, state: NotificationState, **fields: Any) -> NotificationSubscriptionsChecked:
    return NotificationSubscriptionsChecked(client_id=CLIENT, company_id=company, state=state, **fields)


def test_a_companys_notification_state_is_the_newest_checked_whatever_the_order() -> None:
    expires = T0 + timedelta(days=3)
    in_order = _client_with_companies()
    in_order.add(_checked(COMPANY_A, NotificationState.FAILED, detail="handshake"), at=T0 + timedelta(minutes=1))
    in_order.add(
        _checked(COMPANY_A, NotificationState.SUBSCRIBED, entities=["salesInvoices"], expires_at=expires),
        at=T0 + timedelta(minutes=2),
    )
    model = _folded(*in_order.events)
    company = _company(model, COMPANY_A)
    assert company.notification_state == "subscribed"
    assert json.loads(company.notification_json or "{}")["entities"] == ["salesInvoices"]
    assert company.notification_checked_at == T0 + timedelta(minutes=2)
    # Replayed in the other order: the older failure does not hide the newer subscription.
    reversed_log = _client_with_companies()
    reversed_log.add(
        _checked(COMPANY_A, NotificationState.SUBSCRIBED, entities=["salesInvoices"], expires_at=expires),
        at=T0 + timedelta(minutes=2),
    )
    reversed_log.add(_checked(COMPANY_A, NotificationState.FAILED, detail="handshake"), at=T0 + timedelta(minutes=1))
    assert _company(_folded(*reversed_log.events), COMPANY_A).notification_state == "subscribed"
    # B was never checked.
    assert _company(model, COMPANY_B).notification_state is None


def test_a_change_notice_dates_the_companys_last_change_and_another_firms_touches_nothing() -> None:
    log = _client_with_companies()
    notice = BusinessCentralChanged(client_id=CLIENT, company_id=COMPANY_A, entities=["salesInvoices"], notices=1)
    log.add(notice, at=T0 + timedelta(minutes=5))
    log.add(notice, at=T0 + timedelta(minutes=3))
    log.add(notice, firm=OTHER_FIRM, at=T0 + timedelta(minutes=9))
    log.add(_checked(COMPANY_A, NotificationState.FAILED), firm=OTHER_FIRM, at=T0 + timedelta(minutes=9))
    company = _company(_folded(*log.events), COMPANY_A)
    assert company.last_change_notice_at == T0 + timedelta(minutes=5)
    assert company.notification_state is None
