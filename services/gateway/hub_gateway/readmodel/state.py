"""The read model's state, as plain dataclasses the rules (``rules.py``) change.

One dataclass per kind of row, with the same field names as the row's columns, and
``ModelState``: the rows a batch of events is about. Nothing here knows of a database; the
store (``projection.py``) turns rows into these and back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from hub_common.events import CompanyFigures, Envelope, EventData


class RowState:
    """What a client or company row says about its refresh (its ``state`` column)."""

    QUEUED = "queued"
    REFRESHING = "refreshing"
    # A transient failure (throttled, offline, timeout): the fetcher tries again later.
    WAITING = "waiting"
    OK = "ok"
    FAILED = "failed"


@dataclass(slots=True)
class FirmState:
    firm_id: uuid.UUID
    name: str
    # The firm's refresh schedule as set (JSON); None: the hub's default.
    refresh_schedule_json: str | None = None
    events_sequence: int = 0


@dataclass(slots=True)
class AccountantState:
    accountant_id: uuid.UUID
    firm_id: uuid.UUID
    email: str
    display_name: str
    role: str
    # When an owner or admin removed them (None: a member of firm_id).
    removed_at: datetime | None = None
    # When they were last removed, kept when they join again: sessions and API tokens made
    # before it never work again.
    access_ended_at: datetime | None = None
    events_sequence: int = 0


@dataclass(slots=True)
class ClientState:
    client_id: uuid.UUID
    firm_id: uuid.UUID
    name: str
    client_url: str
    tenant: str
    environment: str
    card_json: str
    source: str
    added_at: datetime
    tenant_id: uuid.UUID | None = None
    company_name: str | None = None
    assigned_accountant_id: uuid.UUID | None = None
    removed: bool = False
    # Client-level state: a failure before any company was found lives here.
    state: str = RowState.QUEUED
    failure_json: str | None = None
    next_attempt_at: datetime | None = None
    # The client's own refresh schedule (JSON); None: it follows the firm's.
    refresh_schedule_json: str | None = None
    # The card's, the schedule's, the state's and the companies' last event (see ClientRow).
    events_sequence: int = 0
    schedule_sequence: int = 0
    state_sequence: int = 0
    discovery_sequence: int = 0
    # When the newest list of all the client's companies was read (see ClientRow).
    companies_listed_at: datetime | None = None
    # See ClientRow.moved_revision.
    moved_revision: int = 0
    # See ClientRow.card_revision.
    card_revision: int = 0


@dataclass(slots=True)
class CompanyState:
    client_id: uuid.UUID
    company_id: uuid.UUID
    firm_id: uuid.UUID
    company_name: str
    display_name: str | None = None
    state: str = RowState.QUEUED
    as_of: datetime | None = None
    currency_code: str | None = None
    # The figures as stored: one column each, keyed by column (readmodel/columns.py), and
    # all of them as JSON for the details pane; empty until read.
    figures: dict[str, Any] = field(default_factory=dict)
    figures_json: str | None = None
    # The figures of the newest snapshot applied, not yet in the two fields above: the store
    # turns them into columns and JSON once per batch, however many snapshots of the company
    # the batch holds (a rebuild meets every snapshot the stream keeps).
    read_figures: CompanyFigures | None = None
    accounts_revision: int = 0
    # See CompanyRow.place_revision.
    place_revision: int = 0
    # Whether the newest snapshot carried exchange rates (``CompanyRateState``), and why not.
    exchange_rates_read: bool = False
    exchange_rates_unavailable: str | None = None
    web_client_link: str | None = None
    failure_json: str | None = None
    # The refresh whose outcome the row shows, and when that outcome happened.
    outcome_refresh_id: uuid.UUID | None = None
    outcome_at: datetime | None = None
    next_attempt_at: datetime | None = None
    notification_state: str | None = None
    notification_json: str | None = None
    notification_checked_at: datetime | None = None
    last_change_notice_at: datetime | None = None
    events_sequence: int = 0
    snapshot_sequence: int = 0
    snapshot_applied_at: datetime | None = None


@dataclass(slots=True)
class CompanyRateState:
    """A company's rate for one currency, as of its newest snapshot (LCY per unit)."""

    client_id: uuid.UUID
    company_id: uuid.UUID
    currency_code: str
    firm_id: uuid.UUID
    starting_date: date
    lcy_per_unit: Decimal | None = None


@dataclass(slots=True)
class RefreshState:
    refresh_id: uuid.UUID
    firm_id: uuid.UUID
    client_id: uuid.UUID
    company_id: uuid.UUID | None
    correlation_id: str
    requested_at: datetime
    companies_found: int | None = None
    failed: bool = False
    # The sequence of its RefreshRequested once applied; 0 while only later events recorded it.
    request_sequence: int = 0
    # The state its outcome gave its client (failed, waiting, ok), kept while the client was
    # not known yet: another gateway replica may apply a first refresh's outcome before the
    # ClientAdded that started it, and the ClientAdded then takes it (see ClientState).
    client_state: str | None = None
    client_failure_json: str | None = None
    client_next_attempt_at: datetime | None = None
    client_state_sequence: int = 0


@dataclass(slots=True)
class ConnectionTestState:
    test_id: uuid.UUID
    firm_id: uuid.UUID
    client_id: uuid.UUID | None = None
    tenant: str | None = None
    environment: str | None = None
    result_json: str | None = None
    tested_at: datetime | None = None


@dataclass(slots=True)
class FailureState:
    """One entry of Check Errors; ``next_attempt_at`` is set while a refresh waits to retry."""

    failure_id: uuid.UUID
    firm_id: uuid.UUID
    origin: str
    kind: str
    failure_json: str
    occurred_at: datetime
    client_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    company_name: str | None = None
    tenant: str | None = None
    environment: str | None = None
    attempt: int | None = None
    next_attempt_at: datetime | None = None


@dataclass(slots=True)
class TenantAccessState:
    firm_id: uuid.UUID
    tenant_id: uuid.UUID
    granted: bool
    changed_at: datetime
    method: str | None = None
    granted_by: str | None = None
    reason: str | None = None
    events_sequence: int = 0


@dataclass(slots=True)
class AlertState:
    """An alert episode. Its end may be applied before its start (a redelivery): the start
    then fills in what it is about and keeps the end."""

    episode_id: uuid.UUID
    firm_id: uuid.UUID
    client_id: uuid.UUID
    rule_id: uuid.UUID | None = None
    rule_name: str = ""
    client_name: str = ""
    company_id: uuid.UUID | None = None
    company_name: str | None = None
    figure: str = ""
    comparison: str = ""
    threshold: str = ""
    value: str = ""
    currency_code: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None
    events_sequence: int = 0


@dataclass
class Changes:
    """What a batch changed, per firm: the live page refreshes these clients' rows."""

    clients_by_firm: dict[uuid.UUID, set[uuid.UUID]] = field(default_factory=dict)
    # Firms whose Check Errors changed: a new failure, or a wait for a retry began or ended.
    firms_with_new_failures: set[uuid.UUID] = field(default_factory=set)
    # (firm, accountant) whose sign-ins ended: an owner or admin removed them.
    sign_ins_ended: set[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=set)

    def client(self, firm_id: uuid.UUID, client_id: uuid.UUID) -> None:
        self.clients_by_firm.setdefault(firm_id, set()).add(client_id)


class FailureLog:
    """Check Errors entries, with the waits for a retry indexed by client, so ending them
    does not scan every entry of a large batch."""

    def __init__(self) -> None:
        self.entries: dict[uuid.UUID, FailureState] = {}
        self._waiting_by_client: dict[uuid.UUID | None, set[uuid.UUID]] = {}

    def __contains__(self, failure_id: uuid.UUID) -> bool:
        return failure_id in self.entries

    def add(self, entry: FailureState) -> None:
        self.entries[entry.failure_id] = entry
        if entry.next_attempt_at is not None:
            self._waiting_by_client.setdefault(entry.client_id, set()).add(entry.failure_id)

    def end_waiting(
        self, *, firm_id: uuid.UUID, client_id: uuid.UUID, company_id: uuid.UUID | None, before: datetime
    ) -> bool:
        """Remove the waits of one scope that began before ``before``; whether any ended."""
        waiting = self._waiting_by_client.get(client_id, set())
        ended = [
            failure_id
            for failure_id in waiting
            if (entry := self.entries[failure_id]).firm_id == firm_id
            and entry.company_id == company_id
            and entry.occurred_at < before
        ]
        for failure_id in ended:
            waiting.discard(failure_id)
            del self.entries[failure_id]
        return bool(ended)


@dataclass
class ModelState:
    """The rows of the read model a batch of events is about, as state.

    The store puts in every row the batch's events name (by their ids), so a rule finds a
    row here or it does not exist. ``applied_at`` is when the batch is applied.
    """

    applied_at: datetime
    firms: dict[uuid.UUID, FirmState] = field(default_factory=dict)
    accountants: dict[uuid.UUID, AccountantState] = field(default_factory=dict)
    clients: dict[uuid.UUID, ClientState] = field(default_factory=dict)
    # By client, then company: a refresh is about one client's companies.
    companies: dict[uuid.UUID, dict[uuid.UUID, CompanyState]] = field(default_factory=dict)
    # By (client, company), then currency: each company's rates, replaced by a newer snapshot.
    company_rates: dict[tuple[uuid.UUID, uuid.UUID], dict[str, CompanyRateState]] = field(default_factory=dict)
    refreshes: dict[uuid.UUID, RefreshState] = field(default_factory=dict)
    connection_tests: dict[uuid.UUID, ConnectionTestState] = field(default_factory=dict)
    failures: FailureLog = field(default_factory=FailureLog)
    tenant_access: dict[tuple[uuid.UUID, uuid.UUID], TenantAccessState] = field(default_factory=dict)
    alerts: dict[uuid.UUID, AlertState] = field(default_factory=dict)
    # Each stream's high-water mark.
    positions: dict[str, int] = field(default_factory=dict)
    changes: Changes = field(default_factory=Changes)

    def companies_of(self, client_id: uuid.UUID) -> dict[uuid.UUID, CompanyState]:
        return self.companies.setdefault(client_id, {})

    def company(self, client_id: uuid.UUID, company_id: uuid.UUID) -> CompanyState | None:
        return self.companies.get(client_id, {}).get(company_id)

    def add_company(self, company: CompanyState) -> CompanyState:
        self.companies_of(company.client_id)[company.company_id] = company
        return company

    def all_companies(self) -> Iterable[CompanyState]:
        for companies in self.companies.values():
            yield from companies.values()

    def add_rate(self, rate: CompanyRateState) -> None:
        self.company_rates.setdefault((rate.client_id, rate.company_id), {})[rate.currency_code] = rate

    def all_rates(self) -> Iterable[CompanyRateState]:
        for rates in self.company_rates.values():
            yield from rates.values()


DataT = TypeVar("DataT", bound=EventData)


@dataclass(frozen=True, slots=True)
class StoredEvent(Generic[DataT]):
    """An event as a stream delivered it: where it is stored decides whether it is new."""

    envelope: Envelope[DataT]
    stream: str
    sequence: int

    @property
    def data(self) -> DataT:
        return self.envelope.data
