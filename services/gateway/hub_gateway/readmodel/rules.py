"""The read model's rules, as pure functions: ``apply_<event>(model, event) -> model``.

Each function takes the part of the read model a batch is about (``ModelState`` in
``state.py``: plain dataclasses, one per row, named like the row's columns) and one stored
event, and changes that state as the event says; no database, no I/O. ``RULES`` registers
one function per event type the read model consumes, and ``IGNORED_EVENT_TYPES`` names the
rest, so a new event type in ``hub_common.events`` is either given a rule or deliberately
left out (tests/unit/test_projection_rules.py checks both against the catalogue).

The store layer (``projection.py``) loads and locks the rows a batch touches into a
``ModelState``, folds the batch's events through ``fold``, and writes what changed. The live
projection does that a few hundred events at a time, a rebuild thousands at a time.

The rules that matter most, because events and snapshots travel on two streams with no
order between them and any event may be delivered again:

* A row keeps the stream sequence of the last event applied to it (``events_sequence``);
  an event at or below it changes nothing. A client row keeps one per part (card, schedule,
  state, companies found): gateway replicas share the stream's consumer, so one replica may
  apply an event before another replica applies an older one, and a newer event about the
  state must not make an older request or card look stale. A refresh's own row (its
  request) and a client's removal are kept whatever came before.
* Snapshots are not ordered by their sequence: two fetchers may store a company's later read
  first, so a company row shows the figures read last (``snapshot_sequence`` only breaks a
  tie between reads of the same instant and spots a redelivery).
* A company row shows the outcome (figures, a failure, a wait for a retry) that *happened*
  last, by its own time (``outcome_at``), whichever arrived last; a refresh's own request or
  discovery never makes a row with that refresh's outcome look pending again.
* An event of one firm never touches another firm's rows.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, cast

from hub_common.events import (
    AccountantJoined,
    AccountantRemoved,
    AlertDigestDue,
    AlertRaised,
    AlertResolved,
    AlertRuleRemoved,
    AlertRuleSet,
    BusinessCentralChanged,
    ClientAdded,
    ClientRemoved,
    ClientUpdated,
    ColleagueInvitationChanged,
    ColleagueInvitationWithdrawn,
    ColleagueInvited,
    CompaniesDiscovered,
    CompanySnapshot,
    ConnectionTested,
    ConnectionTestRequested,
    DiscoveredCompany,
    Envelope,
    ExchangeRates,
    Failure,
    FirmCreated,
    InvitationAccepted,
    InvitationCreated,
    InvitationRejected,
    InvitationWithdrawn,
    NotificationSubscriptionsChecked,
    RefreshDeferred,
    RefreshFailed,
    RefreshRequested,
    RefreshScheduleSet,
    TenantAccessGranted,
    TenantAccessRevoked,
    first_refresh_id,
)
from hub_common.logging import get_logger
from hub_gateway.readmodel.state import (
    AccountantState,
    AlertState,
    Changes,
    ClientState,
    CompanyRateState,
    CompanyState,
    ConnectionTestState,
    FailureState,
    FirmState,
    ModelState,
    RefreshState,
    RowState,
    StoredEvent,
    TenantAccessState,
)

logger = get_logger(__name__)


# ---------------------------------------------------------------- shared rules


def _newer_outcome(company: CompanyState, happened_at: datetime) -> bool:
    return company.outcome_at is None or happened_at > company.outcome_at


def _pending_after(company: CompanyState, happened_at: datetime, refresh_id: uuid.UUID) -> bool:
    """A refresh request or discovery makes a row pending only if it is newer than what it shows."""
    return company.outcome_refresh_id != refresh_id and _newer_outcome(company, happened_at)


def _show_pending(company: CompanyState, state: str) -> None:
    company.state = state
    company.next_attempt_at = None


def _show_failure(company: CompanyState, data: RefreshFailed) -> None:
    company.state = RowState.FAILED
    company.failure_json = data.failure.model_dump_json()
    company.next_attempt_at = None
    company.outcome_refresh_id = data.refresh_id
    company.outcome_at = data.failure.occurred_at


def _show_waiting(row: CompanyState | ClientState, data: RefreshDeferred) -> None:
    """The row waits for the fetcher's next attempt. Not an outcome (the refresh goes on), but
    it dates a company's state like one, so an older outcome arriving later cannot hide it."""
    row.state = RowState.WAITING
    row.failure_json = data.failure.model_dump_json()
    row.next_attempt_at = data.next_attempt_at
    if isinstance(row, CompanyState):
        row.outcome_at = data.failure.occurred_at


def _in_scope(refresh: RefreshState | None, company_id: uuid.UUID) -> bool:
    """Whether a refresh is about this company: a refresh of one company touches no other row.

    A refresh with no recorded request (the one a ClientAdded starts) covers the whole client.
    """
    return refresh is None or refresh.company_id in (None, company_id)


def _owned_client(model: ModelState, event: StoredEvent[Any], client_id: uuid.UUID) -> ClientState | None:
    """The client an event is about, if it is known and belongs to the event's firm."""
    client = model.clients.get(client_id)
    if client is None or client.firm_id != event.envelope.firm_id:
        return None
    return client


def _another_firms_client(model: ModelState, event: StoredEvent[Any], client_id: uuid.UUID) -> bool:
    client = model.clients.get(client_id)
    return client is not None and client.firm_id != event.envelope.firm_id


def _newer_state(client: ClientState, event: StoredEvent[Any]) -> bool:
    """Whether the event is the newest to set the client's own state; records it if so."""
    if client.state_sequence >= event.sequence:
        return False
    client.state_sequence = event.sequence
    return True


def _keep_for_the_client(
    refresh: RefreshState | None,
    event: StoredEvent[Any],
    state: str,
    *,
    failure_json: str | None = None,
    next_attempt_at: datetime | None = None,
) -> None:
    """Keep on the refresh the state its outcome gives a client not known yet (its
    ClientAdded, applied by another replica, has not arrived): the ClientAdded takes it."""
    if refresh is None or refresh.client_state_sequence >= event.sequence:
        return
    refresh.client_state, refresh.client_state_sequence = state, event.sequence
    refresh.client_failure_json, refresh.client_next_attempt_at = failure_json, next_attempt_at


def _take_first_refresh_state(model: ModelState, event: StoredEvent[ClientAdded], client: ClientState) -> None:
    """A new client shows what its first refresh (which its ClientAdded started) already said."""
    refresh = _refresh_of(model, event, first_refresh_id(event.envelope), client.client_id)
    if refresh is None or refresh.client_state is None or refresh.client_state_sequence <= client.state_sequence:
        return
    client.state, client.state_sequence = refresh.client_state, refresh.client_state_sequence
    client.failure_json, client.next_attempt_at = refresh.client_failure_json, refresh.client_next_attempt_at


def _refresh_of(
    model: ModelState, event: StoredEvent[Any], refresh_id: uuid.UUID, client_id: uuid.UUID
) -> RefreshState | None:
    """The recorded request of a refresh, if it is this firm's refresh of this client."""
    refresh = model.refreshes.get(refresh_id)
    if refresh is None or refresh.firm_id != event.envelope.firm_id or refresh.client_id != client_id:
        return None
    return refresh


def _recorded_refresh(
    model: ModelState, event: StoredEvent[Any], refresh_id: uuid.UUID, client_id: uuid.UUID
) -> RefreshState | None:
    """The refresh's row, recorded now if its request was not applied yet (another gateway
    replica may apply an event before the older request): its outcome must not be lost.
    Until the request arrives the row covers the whole client, under the correlation id its
    events inherited from the request."""
    if refresh_id not in model.refreshes:
        model.refreshes[refresh_id] = RefreshState(
            refresh_id=refresh_id,
            firm_id=event.envelope.firm_id,
            client_id=client_id,
            company_id=None,
            correlation_id=event.envelope.correlation_id,
            requested_at=event.envelope.occurred_at,
        )
    return _refresh_of(model, event, refresh_id, client_id)


def _new_company(event: StoredEvent[Any], client_id: uuid.UUID, company_id: uuid.UUID, name: str) -> CompanyState:
    """A company first named by a refresh's outcome, at the card revision that refresh read
    (a move drops the rows of an older one)."""
    return CompanyState(
        client_id=client_id,
        company_id=company_id,
        firm_id=event.envelope.firm_id,
        company_name=name,
        accounts_revision=getattr(event.data, "accounts_revision", 0),
        place_revision=getattr(event.data, "accounts_revision", 0),
    )


def _named_at(company: CompanyState, revision: int) -> None:
    """An outcome of a refresh at ``revision`` named the company: it is of that card's place."""
    company.place_revision = max(company.place_revision, revision)


def _end_waiting(
    model: ModelState, *, firm_id: uuid.UUID, client_id: uuid.UUID, company_id: uuid.UUID | None, before: datetime
) -> None:
    """Take from Check Errors the waits for a retry that a later outcome replaced.

    ``company_id`` None is the client's own wait (its BC could not be reached at all). Only
    waits that began before the outcome end, so the result is the same whichever of a
    snapshot and a deferral, which travel on different streams, is projected first.
    """
    if model.failures.end_waiting(firm_id=firm_id, client_id=client_id, company_id=company_id, before=before):
        model.changes.firms_with_new_failures.add(firm_id)


def _record_failure(
    model: ModelState,
    event: StoredEvent[Any],
    failure: Failure,
    *,
    origin: str,
    client_id: uuid.UUID | None,
    tenant: str | None,
    environment: str | None,
    company_id: uuid.UUID | None = None,
    company_name: str | None = None,
    deferral: RefreshDeferred | None = None,
) -> None:
    """Keep a failure for Check Errors once (keyed by its event), whatever happens to the row
    it failed. A deferral's entry says when the next attempt is due."""
    envelope = event.envelope
    if envelope.id in model.failures:
        return
    model.failures.add(
        FailureState(
            failure_id=envelope.id,
            firm_id=envelope.firm_id,
            origin=origin,
            client_id=client_id,
            company_id=company_id,
            company_name=company_name,
            tenant=tenant,
            environment=environment,
            kind=failure.kind.value,
            failure_json=failure.model_dump_json(),
            occurred_at=failure.occurred_at,
            attempt=deferral.attempt if deferral else None,
            next_attempt_at=deferral.next_attempt_at if deferral else None,
        )
    )


def _record_refresh_failure(
    model: ModelState, event: StoredEvent[RefreshFailed] | StoredEvent[RefreshDeferred], client: ClientState | None
) -> None:
    """A refresh's failure (or wait for a retry) for Check Errors, named by its client's BC."""
    data = event.data
    _record_failure(
        model,
        event,
        data.failure,
        origin="refresh",
        client_id=data.client_id,
        company_id=data.company_id,
        company_name=data.company_name,
        # None, not "", for a client whose card is not applied yet (_client_applied_late).
        tenant=(client.tenant or None) if client else None,
        environment=(client.environment or None) if client else None,
        deferral=data if isinstance(data, RefreshDeferred) else None,
    )


# ---------------------------------------------------------------- one rule per event type


def apply_firm_created(model: ModelState, event: StoredEvent[FirmCreated]) -> ModelState:
    firm_id = event.envelope.firm_id
    firm = model.firms.get(firm_id)
    if firm is None:
        model.firms[firm_id] = FirmState(firm_id=firm_id, name=event.data.name, events_sequence=event.sequence)
    elif not firm.name:
        firm.name = event.data.name  # kept by its schedule, applied first (_firm_applied_late)
    return model


def _firm_applied_late(model: ModelState, event: StoredEvent[Any]) -> FirmState:
    """The firm of an event another gateway replica applied before the firm's FirmCreated
    (its batch not yet committed, or given to a replica again after a crash): kept without
    a name, which the FirmCreated then gives it, so neither event is lost."""
    firm_id = event.envelope.firm_id
    firm = model.firms[firm_id] = FirmState(firm_id=firm_id, name="")
    return firm


def apply_refresh_schedule_set(model: ModelState, event: StoredEvent[RefreshScheduleSet]) -> ModelState:
    data, firm_id = event.data, event.envelope.firm_id
    schedule = None if data.follows_firm else refresh_schedule_json(data)
    if data.client_id is None:
        firm = model.firms.get(firm_id) or _firm_applied_late(model, event)
        if firm.events_sequence < event.sequence:
            firm.refresh_schedule_json, firm.events_sequence = schedule, event.sequence
        return model
    client = model.clients.get(data.client_id) or _client_applied_late(model, event, data.client_id)
    if client.firm_id == firm_id and client.schedule_sequence < event.sequence:
        client.refresh_schedule_json, client.schedule_sequence = schedule, event.sequence
        model.changes.client(firm_id, client.client_id)
    return model


def refresh_schedule_json(data: RefreshScheduleSet) -> str:
    """A schedule as the read model keeps it: what the accountant set, and nothing else."""
    return json.dumps(
        {
            "every_minutes": data.every_minutes,
            "quiet_from": data.quiet_from.isoformat("minutes") if data.quiet_from else None,
            "quiet_until": data.quiet_until.isoformat("minutes") if data.quiet_until else None,
            "time_zone": data.time_zone,
        }
    )


def apply_accountant_joined(model: ModelState, event: StoredEvent[AccountantJoined]) -> ModelState:
    data = event.data
    accountant = model.accountants.get(data.accountant_id)
    if accountant is not None and accountant.events_sequence >= event.sequence:
        if not accountant.role:
            # Their removal, applied first (_accountant_applied_late), stays; who they are
            # is only here.
            accountant.email, accountant.display_name, accountant.role = data.email, data.display_name, data.role.value
        return model
    if accountant is None:
        accountant = model.accountants[data.accountant_id] = AccountantState(
            accountant_id=data.accountant_id,
            firm_id=event.envelope.firm_id,
            email=data.email,
            display_name=data.display_name,
            role=data.role.value,
        )
    accountant.email, accountant.display_name, accountant.role = data.email, data.display_name, data.role.value
    # One removed from a firm joins again, maybe another firm, through a new invitation.
    accountant.firm_id, accountant.removed_at = event.envelope.firm_id, None
    accountant.events_sequence = event.sequence
    return model


def apply_accountant_removed(model: ModelState, event: StoredEvent[AccountantRemoved]) -> ModelState:
    data, envelope = event.data, event.envelope
    accountant = model.accountants.get(data.accountant_id)
    if accountant is None:
        # Another replica applied this before their AccountantJoined: the removal is kept, or
        # the join applied later would let their sessions and API tokens go on working.
        accountant = model.accountants[data.accountant_id] = AccountantState(
            accountant_id=data.accountant_id, firm_id=envelope.firm_id, email=data.email, display_name="", role=""
        )
    if accountant.firm_id != envelope.firm_id or accountant.events_sequence >= event.sequence:
        return model
    accountant.removed_at = accountant.access_ended_at = envelope.occurred_at
    accountant.events_sequence = event.sequence
    # Their open pages end now, on every replica.
    model.changes.sign_ins_ended.add((envelope.firm_id, accountant.accountant_id))
    return model


def _apply_client_card(model: ModelState, event: StoredEvent[ClientAdded] | StoredEvent[ClientUpdated]) -> None:
    data, envelope = event.data, event.envelope
    client = model.clients.get(data.client_id) or _client_applied_late(model, event, data.client_id)
    if client.firm_id != envelope.firm_id:
        return
    if isinstance(data, ClientUpdated) and data.moved_revision > client.moved_revision:
        # Moved (a registry of the release before says no revision: its moves stay as they
        # were). Every update says where the card last moved, and the highest is taken before
        # anything else, so a replica that applies a later update first still learns of it.
        client.moved_revision = data.moved_revision
        _forget_companies_of_the_place_before(model, client, moved_at=envelope.occurred_at)
    if isinstance(data, ClientAdded) and not client.source:
        # New, or kept by an update or removal another replica applied first: what only
        # the ClientAdded says.
        client.source, client.added_at = data.source.value, envelope.occurred_at
        _take_first_refresh_state(model, cast("StoredEvent[ClientAdded]", event), client)
    if client.events_sequence >= event.sequence:
        return
    client.name = data.card.name
    client.client_url = data.card.client_url
    client.tenant = data.connection.tenant
    client.tenant_id = data.connection.tenant_id
    client.environment = data.connection.environment
    client.company_name = data.connection.company_name
    client.card_json = data.card.model_dump_json()
    client.assigned_accountant_id = data.card.assigned_accountant_id
    client.card_revision = data.card_revision
    client.events_sequence = event.sequence


def _of_the_place_before(model: ModelState, event: StoredEvent[Any], client: ClientState | None, revision: int) -> bool:
    """Whether a refresh's outcome read the tenant or environment the card named before its
    last move (a refresh asked for before it, tried again or finished after it). Its rows
    are gone; its refresh run counts as done, with nothing of it left to read."""
    if client is None or revision >= client.moved_revision:
        return False
    refresh = _recorded_refresh(model, event, event.data.refresh_id, client.client_id)
    if refresh is not None:
        refresh.companies_found = 0
    return True


_END_OF_TIME = datetime.max.replace(tzinfo=UTC)


def _forget_companies_of_the_place_before(model: ModelState, client: ClientState, *, moved_at: datetime) -> None:
    """The card moved to another tenant or environment: the companies the place it named
    before holds are not this client's any more. A company listed or read at the card's new
    revision (the new place's, whose outcome may come before this event: the streams keep no
    order between them) stays; what a refresh of the old place says later changes nothing
    (``_of_the_place_before``)."""
    companies = model.companies_of(client.client_id)
    # Waits for a retry of the old place end with it: its companies', and the client's own
    # (its BC could not be reached) that began before the move; the new place's began after.
    gone = [company_id for company_id, company in companies.items() if company.place_revision < client.moved_revision]
    _end_waiting(model, firm_id=client.firm_id, client_id=client.client_id, company_id=None, before=moved_at)
    for company_id in gone:
        _end_waiting(
            model, firm_id=client.firm_id, client_id=client.client_id, company_id=company_id, before=_END_OF_TIME
        )
    for company_id in gone:
        del companies[company_id]
        model.company_rates.pop((client.client_id, company_id), None)


def apply_client_added(model: ModelState, event: StoredEvent[ClientAdded]) -> ModelState:
    _apply_client_card(model, event)
    return model


def apply_client_updated(model: ModelState, event: StoredEvent[ClientUpdated]) -> ModelState:
    _apply_client_card(model, event)
    return model


def _client_applied_late(model: ModelState, event: StoredEvent[Any], client_id: uuid.UUID) -> ClientState:
    """A client whose ClientAdded is not applied yet (another gateway replica applied a later
    event of it first: that replica's batch was not committed yet, or was given to it again
    after a crash). It is kept with what the later event says; its ClientAdded gives it the
    rest (``source`` says whether it came)."""
    envelope = event.envelope
    client = model.clients[client_id] = ClientState(
        client_id=client_id,
        firm_id=envelope.firm_id,
        name="",
        client_url="",
        tenant="",
        environment="",
        card_json="{}",
        source="",
        added_at=envelope.occurred_at,
    )
    return client


def apply_client_removed(model: ModelState, event: StoredEvent[ClientRemoved]) -> ModelState:
    # A removal is for good (a client added again is another client), so no event before or
    # after it undoes it, its ClientAdded applied after it included.
    client_id = event.data.client_id
    if client_id not in model.clients:
        _client_applied_late(model, event, client_id)
    client = _owned_client(model, event, client_id)
    if client is not None:
        client.removed = True
    return model


def apply_refresh_requested(model: ModelState, event: StoredEvent[RefreshRequested]) -> ModelState:
    data, envelope = event.data, event.envelope
    if _another_firms_client(model, event, data.client_id):
        return model
    # The refresh's row whatever else was applied first (its discovery, its client's card):
    # the refresh run's progress counts these rows.
    refresh = _recorded_refresh(model, event, data.refresh_id, data.client_id)
    if refresh is None or refresh.request_sequence >= event.sequence:
        return model  # another firm's or client's refresh, or this request applied before
    refresh.request_sequence = event.sequence
    # The request says what the refresh is about, also when a later event recorded it first.
    refresh.company_id = data.company_id
    refresh.correlation_id, refresh.requested_at = envelope.correlation_id, envelope.occurred_at
    client = _owned_client(model, event, data.client_id)
    if client is None:
        return model
    if data.company_id is None and _newer_state(client, event):
        # The client's own state is what its row says while no company is known; a refresh
        # of one company leaves it alone.
        client.state = RowState.QUEUED
        client.next_attempt_at = None
    if refresh.companies_found is not None or refresh.failed:
        return model  # its discovery or failure (applied first, on another replica) said more
    for company in model.companies_of(client.client_id).values():
        if _in_scope(refresh, company.company_id) and _pending_after(company, envelope.occurred_at, data.refresh_id):
            _show_pending(company, RowState.QUEUED)
    return model


def _unique(data: CompaniesDiscovered) -> list[DiscoveredCompany]:
    """The discovered companies, each id once: BC answering one id twice must not stop the
    projection (the first entry wins)."""
    unique: dict[uuid.UUID, DiscoveredCompany] = {}
    for company in data.companies:
        unique.setdefault(company.company_id, company)
    if len(unique) < len(data.companies):
        logger.warning(
            "discovered companies repeat an id",
            client_id=str(data.client_id),
            refresh_id=str(data.refresh_id),
            repeated=len(data.companies) - len(unique),
        )
    return list(unique.values())


def _scoped_refresh(
    model: ModelState,
    event: StoredEvent[CompaniesDiscovered] | StoredEvent[RefreshFailed] | StoredEvent[RefreshDeferred],
) -> RefreshState | None:
    """The refresh an event of its whole client ends, about the one company the event names
    even when the request was not applied yet (otherwise every sibling would show the
    event's state and the run would wait for all of them)."""
    data = event.data
    refresh = _recorded_refresh(model, event, data.refresh_id, data.client_id)
    if refresh is not None and data.refresh_company_id is not None:
        refresh.company_id = data.refresh_company_id
    return refresh


def apply_companies_discovered(model: ModelState, event: StoredEvent[CompaniesDiscovered]) -> ModelState:
    data, discovered_at = event.data, event.envelope.occurred_at
    client = _owned_client(model, event, data.client_id)
    if client is None:
        if not _another_firms_client(model, event, data.client_id):
            # Its client's ClientAdded is still to come (another replica applies it).
            refresh = _scoped_refresh(model, event)
            if refresh is not None:
                refresh.companies_found = len([c for c in _unique(data) if _in_scope(refresh, c.company_id)])
            _keep_for_the_client(refresh, event, RowState.OK)
        return model
    if _of_the_place_before(model, event, client, data.accounts_revision):
        return model
    if _newer_state(client, event):
        client.state = RowState.OK
        client.failure_json = None
        client.next_attempt_at = None
    # The client's BC answered: no wait to reach it is pending any more.
    _end_waiting(model, firm_id=client.firm_id, client_id=client.client_id, company_id=None, before=discovered_at)
    refresh = _scoped_refresh(model, event)
    discovered = [company for company in _unique(data) if _in_scope(refresh, company.company_id)]
    if refresh is not None:
        refresh.companies_found = len(discovered)
    if client.discovery_sequence >= event.sequence:
        return model  # a newer discovery already said which companies the client has
    client.discovery_sequence = event.sequence
    if data.refresh_company_id is None and (refresh is None or refresh.company_id is None):
        listed_at = client.companies_listed_at
        client.companies_listed_at = discovered_at if listed_at is None else max(listed_at, discovered_at)
    existing = model.companies_of(client.client_id)
    found = {company.company_id for company in discovered}
    for company_id in [company_id for company_id in existing if company_id not in found]:
        # The company is gone from the client's BC (deleted or access withdrawn), unless
        # its row shows an outcome read after this list: a list applied late (the events'
        # projection lagging the snapshots') is history about it.
        if _in_scope(refresh, company_id) and _newer_outcome(existing[company_id], discovered_at):
            del existing[company_id]
            model.company_rates.pop((client.client_id, company_id), None)
            # Nothing will end its wait for a retry in Check Errors any more.
            _end_waiting(
                model, firm_id=client.firm_id, client_id=client.client_id, company_id=company_id, before=discovered_at
            )
    for company in discovered:
        row = existing.get(company.company_id)
        if row is None:
            row = model.add_company(_new_company(event, client.client_id, company.company_id, company.name))
        _named_at(row, data.accounts_revision)
        if _newer_outcome(row, discovered_at):
            # The newest reading of the company names it (a snapshot may be newer).
            row.company_name = company.name
            row.display_name = company.display_name
        if _pending_after(row, discovered_at, data.refresh_id):
            _show_pending(row, RowState.REFRESHING)
        row.events_sequence = max(row.events_sequence, event.sequence)
    return model


def _gone_before(client: ClientState | None, happened_at: datetime) -> bool:
    """Whether a list of the client's companies, read after ``happened_at``, left out a
    company that has no row: what happened to it then (applied late, or again) is history."""
    return client is not None and client.companies_listed_at is not None and happened_at < client.companies_listed_at


def apply_refresh_failed(model: ModelState, event: StoredEvent[RefreshFailed]) -> ModelState:
    data, envelope = event.data, event.envelope
    client = model.clients.get(data.client_id)
    if client is not None and client.firm_id != envelope.firm_id:
        return model
    if _of_the_place_before(model, event, client, data.accounts_revision):
        return model
    _record_refresh_failure(model, event, client)
    failed_at = data.failure.occurred_at
    if data.company_id is None:
        refresh = _scoped_refresh(model, event)
        if refresh is not None:
            refresh.failed = True
        if client is None:
            # Its client's ClientAdded is still to come (another replica applies it).
            _keep_for_the_client(refresh, event, RowState.FAILED, failure_json=data.failure.model_dump_json())
        elif _newer_state(client, event):
            client.state = RowState.FAILED
            client.failure_json = data.failure.model_dump_json()
            client.next_attempt_at = None
        # The refresh failed and its companies with it even when a newer event set the
        # client's own state first (on another replica): the refresh run counts on these.
        _end_waiting(model, firm_id=envelope.firm_id, client_id=data.client_id, company_id=None, before=failed_at)
        for row in model.companies_of(data.client_id).values():
            if _in_scope(refresh, row.company_id) and _newer_outcome(row, failed_at):
                _show_failure(row, data)
                _end_waiting(
                    model,
                    firm_id=envelope.firm_id,
                    client_id=data.client_id,
                    company_id=row.company_id,
                    before=failed_at,
                )
        return model
    company = model.company(data.client_id, data.company_id)
    if company is not None and (
        company.events_sequence >= event.sequence
        # Older than the outcome shown (which came later, on the other stream).
        or not _newer_outcome(company, failed_at)
    ):
        return model
    if company is None:
        if _gone_before(client, failed_at):
            return model  # its failure is in Check Errors' history (above); no row comes back
        company = model.add_company(
            _new_company(event, data.client_id, data.company_id, data.company_name or str(data.company_id))
        )
    _show_failure(company, data)
    _named_at(company, data.accounts_revision)
    company.events_sequence = event.sequence
    _end_waiting(
        model, firm_id=envelope.firm_id, client_id=data.client_id, company_id=data.company_id, before=failed_at
    )
    return model


def apply_refresh_deferred(model: ModelState, event: StoredEvent[RefreshDeferred]) -> ModelState:
    """A refresh will be tried again: the rows it is about, and Check Errors, say so at once."""
    data, firm_id = event.data, event.envelope.firm_id
    client = model.clients.get(data.client_id)
    if client is not None and client.firm_id != firm_id:
        return model
    if _of_the_place_before(model, event, client, data.accounts_revision):
        return model
    waiting_since = data.failure.occurred_at
    if data.company_id is None:
        refresh = _scoped_refresh(model, event)
        if client is None:
            # Its client's ClientAdded is still to come (another replica applies it).
            _keep_for_the_client(
                refresh,
                event,
                RowState.WAITING,
                failure_json=data.failure.model_dump_json(),
                next_attempt_at=data.next_attempt_at,
            )
        elif _newer_state(client, event):
            _show_waiting(client, data)
        for row in model.companies_of(data.client_id).values():
            if _in_scope(refresh, row.company_id) and _newer_outcome(row, waiting_since):
                _show_waiting(row, data)
    else:
        company = model.company(data.client_id, data.company_id)
        if company is not None and (
            company.events_sequence >= event.sequence or not _newer_outcome(company, waiting_since)
        ):
            return model  # replayed, or a later outcome (maybe of this very retry) is shown already
        if company is None:
            if _gone_before(client, waiting_since):
                return model  # nothing waits for a company gone since: no row, no wait
            company = model.add_company(
                _new_company(event, data.client_id, data.company_id, data.company_name or str(data.company_id))
            )
        _show_waiting(company, data)
        _named_at(company, data.accounts_revision)
        company.events_sequence = event.sequence
    # This attempt's wait replaces the wait of an earlier attempt of the same scope.
    _end_waiting(model, firm_id=firm_id, client_id=data.client_id, company_id=data.company_id, before=waiting_since)
    _record_refresh_failure(model, event, client)
    return model


def _connection_test(
    model: ModelState, event: StoredEvent[ConnectionTestRequested] | StoredEvent[ConnectionTested]
) -> ConnectionTestState | None:
    """The test's row (new if need be), unless it is another firm's."""
    data, firm_id = event.data, event.envelope.firm_id
    test = model.connection_tests.get(data.test_id)
    if test is None:
        test = model.connection_tests[data.test_id] = ConnectionTestState(
            test_id=data.test_id, firm_id=firm_id, client_id=data.client_id
        )
    return test if test.firm_id == firm_id else None


def apply_connection_test_requested(model: ModelState, event: StoredEvent[ConnectionTestRequested]) -> ModelState:
    test = _connection_test(model, event)
    if test is not None:
        test.tenant, test.environment = event.data.connection.tenant, event.data.connection.environment
    return model


def apply_connection_tested(model: ModelState, event: StoredEvent[ConnectionTested]) -> ModelState:
    data = event.data
    test = _connection_test(model, event)
    if test is None:
        return model
    if data.connection is not None:
        # The test ended before any fetcher took it: its request may never have been seen.
        test.tenant, test.environment = data.connection.tenant, data.connection.environment
    test.result_json = data.model_dump_json()
    test.tested_at = event.envelope.occurred_at
    if data.failure is not None:
        _record_failure(
            model,
            event,
            data.failure,
            origin="connection_test",
            client_id=data.client_id,
            tenant=test.tenant,
            environment=test.environment,
        )
    return model


def _tenant_access(
    model: ModelState, event: StoredEvent[TenantAccessGranted] | StoredEvent[TenantAccessRevoked]
) -> TenantAccessState | None:
    """The firm's access row for the tenant (new if need be), unless the event is stale."""
    key = (event.envelope.firm_id, event.data.tenant_id)
    access = model.tenant_access.get(key)
    if access is not None and access.events_sequence >= event.sequence:
        return None
    if access is None:
        access = model.tenant_access[key] = TenantAccessState(
            firm_id=key[0], tenant_id=key[1], granted=False, changed_at=event.envelope.occurred_at
        )
    access.changed_at = event.envelope.occurred_at
    access.events_sequence = event.sequence
    return access


def apply_tenant_access_granted(model: ModelState, event: StoredEvent[TenantAccessGranted]) -> ModelState:
    access = _tenant_access(model, event)
    if access is not None:
        access.granted = True
        access.method, access.granted_by, access.reason = event.data.method.value, event.data.granted_by, None
    return model


def apply_tenant_access_revoked(model: ModelState, event: StoredEvent[TenantAccessRevoked]) -> ModelState:
    access = _tenant_access(model, event)
    if access is not None:
        access.granted = False
        access.reason = event.data.reason
    return model


def _alert(model: ModelState, event: StoredEvent[AlertRaised] | StoredEvent[AlertResolved]) -> AlertState | None:
    """The episode's row (new if need be), unless it is another firm's.

    An episode's start and end each set their own fields once, so they apply in either
    order (a redelivered start after its end) and a repeated one changes nothing.
    """
    alert = model.alerts.get(event.data.episode_id)
    if alert is not None and alert.firm_id != event.envelope.firm_id:
        return None
    if alert is None:
        alert = model.alerts[event.data.episode_id] = AlertState(
            episode_id=event.data.episode_id, firm_id=event.envelope.firm_id, client_id=event.data.client_id
        )
    alert.events_sequence = max(alert.events_sequence, event.sequence)
    return alert


def apply_alert_raised(model: ModelState, event: StoredEvent[AlertRaised]) -> ModelState:
    alert = _alert(model, event)
    if alert is not None and alert.started_at is None:
        data = event.data
        alert.rule_id, alert.rule_name = data.rule_id, data.rule_name
        alert.client_name, alert.company_id, alert.company_name = data.client_name, data.company_id, data.company_name
        alert.figure, alert.comparison = data.figure, data.comparison
        alert.threshold, alert.value, alert.currency_code = str(data.threshold), str(data.value), data.currency_code
        alert.started_at = data.started_at
    return model


def apply_alert_resolved(model: ModelState, event: StoredEvent[AlertResolved]) -> ModelState:
    alert = _alert(model, event)
    if alert is not None and alert.ended_at is None:
        alert.rule_id = event.data.rule_id
        alert.company_id = event.data.company_id
        alert.ended_at, alert.end_reason = event.data.ended_at, event.data.reason
    return model


def apply_company_snapshot(model: ModelState, event: StoredEvent[CompanySnapshot]) -> ModelState:
    data = event.data
    client = model.clients.get(data.client_id)
    if client is not None and client.firm_id != event.envelope.firm_id:
        return model
    if _of_the_place_before(model, event, client, data.accounts_revision):
        return model
    # A snapshot may arrive before its client's ClientAdded (another stream): keep it under
    # the event's firm; the dashboard shows it once the client row exists.
    company = model.company(data.client_id, data.company_id)
    if company is None:
        if _gone_before(client, data.read_at):
            # A list of the client's companies read after this snapshot does not name the
            # company: it is gone from BC, and this read (applied late, or again) is history.
            return model
        company = model.add_company(_new_company(event, data.client_id, data.company_id, data.company_name))
    _named_at(company, data.accounts_revision)
    if _newer_outcome(company, data.read_at):
        # Newer figures always show; the state only if nothing later (a failure, a wait for
        # a retry) happened to the company, whichever stream was projected first.
        company.outcome_refresh_id = data.refresh_id
        company.outcome_at = data.read_at
        company.state = RowState.OK
        company.failure_json = None
        company.next_attempt_at = None
    _end_waiting(
        model, firm_id=company.firm_id, client_id=data.client_id, company_id=data.company_id, before=data.read_at
    )
    if not _newer_figures(company, data, event.sequence):
        # The read ended its refresh (above), but the figures shown stay: they were read
        # later, or made with the card's newer account numbers.
        return model
    company.company_name = data.company_name
    company.display_name = data.company_display_name
    company.as_of = data.read_at
    company.currency_code = data.currency_code
    company.read_figures = data.figures
    company.accounts_revision = data.accounts_revision
    _replace_rates(model, company, data.exchange_rates)
    company.web_client_link = data.web_client_link
    company.snapshot_sequence = event.sequence
    company.snapshot_applied_at = model.applied_at
    return model


def _newer_figures(company: CompanyState, data: CompanySnapshot, sequence: int) -> bool:
    """Whether the snapshot's figures replace the company's: made with the card's newest
    account numbers, then read last, then stored last. A refresh requested before the
    accountant changed the card's cash or tax accounts may read BC after the one requested
    since (it waited for a retry, or for BC); its figures follow numbers the card no longer
    names. The stream sequence decides only between reads of the same instant, and makes
    the same snapshot delivered again change nothing."""
    if data.accounts_revision != company.accounts_revision:
        return data.accounts_revision > company.accounts_revision
    if company.as_of is None:
        return True
    if company.as_of != data.read_at:
        return company.as_of < data.read_at
    return company.snapshot_sequence < sequence


def _replace_rates(model: ModelState, company: CompanyState, rates: ExchangeRates | None) -> None:
    """The company's rates become the snapshot's: a currency BC no longer rates is gone, and
    a snapshot without rates (BC did not give them, or one from before the hub read them)
    leaves none, with the reason."""
    model.company_rates[(company.client_id, company.company_id)] = {}
    company.exchange_rates_read = rates is not None and rates.unavailable is None
    company.exchange_rates_unavailable = rates.unavailable if rates is not None else None
    for rate in rates.rates if rates is not None else ():
        model.add_rate(
            CompanyRateState(
                client_id=company.client_id,
                company_id=company.company_id,
                currency_code=rate.currency_code,
                firm_id=company.firm_id,
                starting_date=rate.starting_date,
                lcy_per_unit=rate.lcy_per_unit,
            )
        )


def _company_of_firm(
    model: ModelState, event: StoredEvent[Any], client_id: uuid.UUID, company_id: uuid.UUID
) -> CompanyState | None:
    client = model.clients.get(client_id)
    if client is None or client.firm_id != event.envelope.firm_id:
        return None
    return model.company(client_id, company_id)


def apply_notification_subscriptions_checked(
    model: ModelState, event: StoredEvent[NotificationSubscriptionsChecked]
) -> ModelState:
    """A company's webhook state as the fetcher last left it (its company row exists: the
    fetcher subscribes only companies it has just read)."""
    data = event.data
    company = _company_of_firm(model, event, data.client_id, data.company_id)
    checked_at = event.envelope.occurred_at
    if company is None or (
        company.notification_checked_at is not None and company.notification_checked_at >= checked_at
    ):
        return model
    company.notification_state = data.state.value
    company.notification_json = data.model_dump_json(include={"entities", "expires_at", "detail", "failure"})
    company.notification_checked_at = checked_at
    return model


def apply_business_central_changed(model: ModelState, event: StoredEvent[BusinessCentralChanged]) -> ModelState:
    data = event.data
    company = _company_of_firm(model, event, data.client_id, data.company_id)
    noticed_at = event.envelope.occurred_at
    if company is not None and (company.last_change_notice_at is None or company.last_change_notice_at < noticed_at):
        company.last_change_notice_at = noticed_at
    return model


# ---------------------------------------------------------------- the table

Rule = Callable[[ModelState, StoredEvent[Any]], ModelState]

RULES: dict[str, Rule] = {
    FirmCreated.event_type: apply_firm_created,
    AccountantJoined.event_type: apply_accountant_joined,
    AccountantRemoved.event_type: apply_accountant_removed,
    RefreshScheduleSet.event_type: apply_refresh_schedule_set,
    ClientAdded.event_type: apply_client_added,
    ClientUpdated.event_type: apply_client_updated,
    ClientRemoved.event_type: apply_client_removed,
    RefreshRequested.event_type: apply_refresh_requested,
    CompaniesDiscovered.event_type: apply_companies_discovered,
    RefreshFailed.event_type: apply_refresh_failed,
    RefreshDeferred.event_type: apply_refresh_deferred,
    ConnectionTestRequested.event_type: apply_connection_test_requested,
    ConnectionTested.event_type: apply_connection_tested,
    TenantAccessGranted.event_type: apply_tenant_access_granted,
    TenantAccessRevoked.event_type: apply_tenant_access_revoked,
    CompanySnapshot.event_type: apply_company_snapshot,
    NotificationSubscriptionsChecked.event_type: apply_notification_subscriptions_checked,
    BusinessCentralChanged.event_type: apply_business_central_changed,
    AlertRaised.event_type: apply_alert_raised,
    AlertResolved.event_type: apply_alert_resolved,
}

# Events the read model has nothing to show for: invitations are the invitations service's
# (the gateway asks it), and an accepted invitation shows through the AccountantJoined and
# ClientAdded it leads to. Their stream positions still advance.
IGNORED_EVENT_TYPES: frozenset[str] = frozenset(
    {
        # A pending colleague invitation is the registry's (the gateway asks it); the
        # colleague shows in the read model through the AccountantJoined of the sign-in,
        # with the role it then gave.
        ColleagueInvited.event_type,
        ColleagueInvitationChanged.event_type,
        ColleagueInvitationWithdrawn.event_type,
        InvitationCreated.event_type,
        InvitationAccepted.event_type,
        InvitationRejected.event_type,
        InvitationWithdrawn.event_type,
        # Alert rules are the registry's (the gateway asks it); a digest is mail only.
        AlertRuleSet.event_type,
        AlertRuleRemoved.event_type,
        AlertDigestDue.event_type,
    }
)


def _note_change(changes: Changes, envelope: Envelope[Any]) -> None:
    data = envelope.data
    client_id = getattr(data, "client_id", None)
    if isinstance(client_id, uuid.UUID):
        changes.client(envelope.firm_id, client_id)
    if isinstance(data, RefreshFailed | RefreshDeferred) or (
        isinstance(data, ConnectionTested) and data.failure is not None
    ):
        changes.firms_with_new_failures.add(envelope.firm_id)


def apply(model: ModelState, event: StoredEvent[Any]) -> ModelState:
    """One event through its rule; every event, ruled or ignored, advances its stream."""
    rule = RULES.get(event.envelope.type)
    if rule is not None:
        rule(model, event)
    model.positions[event.stream] = max(model.positions.get(event.stream, 0), event.sequence)
    _note_change(model.changes, event.envelope)
    return model


def fold(model: ModelState, events: Iterable[StoredEvent[Any]]) -> ModelState:
    """Events in stream order, one after another."""
    for event in events:
        apply(model, event)
    return model
