"""Applying events to the read model, one batch per transaction."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import delete, event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlmodel import SQLModel, col, select

from hub_common.consumers import Delivery
from hub_common.events import (
    AccountantJoined,
    ClientAdded,
    ClientRemoved,
    ClientUpdated,
    CompaniesDiscovered,
    CompanySnapshot,
    ConnectionTested,
    ConnectionTestRequested,
    DiscoveredCompany,
    Envelope,
    EventData,
    Failure,
    FirmCreated,
    RefreshDeferred,
    RefreshFailed,
    RefreshRequested,
    TenantAccessGranted,
    TenantAccessRevoked,
)
from hub_common.logging import get_logger
from hub_gateway.readmodel.columns import figure_values
from hub_gateway.readmodel.models import (
    AccountantRow,
    ClientRow,
    CompanyRow,
    ConnectionTestRow,
    FailureRow,
    FirmRow,
    ProjectionPosition,
    RefreshRow,
    TenantAccessRow,
)

logger = get_logger(__name__)


@dataclass
class Changes:
    """What a batch changed, per firm: the live page refreshes these clients' rows."""

    clients_by_firm: dict[uuid.UUID, set[uuid.UUID]] = field(default_factory=dict)
    # Firms whose Check Errors changed: a new failure, or a wait for a retry began or ended.
    firms_with_new_failures: set[uuid.UUID] = field(default_factory=set)

    def client(self, firm_id: uuid.UUID, client_id: uuid.UUID) -> None:
        self.clients_by_firm.setdefault(firm_id, set()).add(client_id)


class CompanyState:
    QUEUED = "queued"
    REFRESHING = "refreshing"
    # A transient failure (throttled, offline, timeout): the fetcher tries again later.
    WAITING = "waiting"
    OK = "ok"
    FAILED = "failed"


def _newer_outcome(row: CompanyRow, happened_at: datetime) -> bool:
    return row.outcome_at is None or happened_at > row.outcome_at


def _pending_after(row: CompanyRow, envelope: Envelope[Any], refresh_id: Any) -> bool:
    """A refresh request or discovery makes a row pending only if it is newer than what it shows."""
    return row.outcome_refresh_id != refresh_id and _newer_outcome(row, envelope.occurred_at)


def _show_pending(row: CompanyRow, state: str) -> None:
    row.state = state
    row.next_attempt_at = None


def _show_failure(row: CompanyRow, failure_json: str, data: RefreshFailed) -> None:
    row.state = CompanyState.FAILED
    row.failure_json = failure_json
    row.next_attempt_at = None
    row.outcome_refresh_id = data.refresh_id
    row.outcome_at = data.failure.occurred_at


def _show_waiting(row: CompanyRow | ClientRow, data: RefreshDeferred) -> None:
    """The row waits for the fetcher's next attempt. Not an outcome (the refresh goes on), but
    it dates the row's state like one, so an older outcome arriving later cannot hide it."""
    row.state = CompanyState.WAITING
    row.failure_json = _failure_json(data.failure)
    row.next_attempt_at = data.next_attempt_at
    if isinstance(row, CompanyRow):
        row.outcome_at = data.failure.occurred_at


def _in_scope(refresh: RefreshRow | None, company_id: uuid.UUID) -> bool:
    """Whether a refresh is about this company: a refresh of one company touches no other row.

    A refresh with no recorded request (the one a ClientAdded starts) covers the whole client.
    """
    return refresh is None or refresh.company_id in (None, company_id)


def _failure_json(failure: Failure) -> str:
    return failure.model_dump_json()


RowT = TypeVar("RowT", bound=SQLModel)
# Session.info keys of a batch's transaction: the clients whose rows _preload locked and
# loaded, strong references that keep those rows (and new ones) in the identity map, and
# the firms whose Check Errors lost a waiting entry.
PRELOADED = "preloaded_clients"
HELD_ROWS = "held_rows"
CHECK_ERRORS_CHANGED = "check_errors_changed"


async def _locked(model: type[RowT], session: AsyncSession, key: Any) -> RowT | None:
    """A client or company row, locked until the transaction ends.

    The events and snapshots projections run concurrently (and so may several gateway
    replicas): without the lock, two transactions could read the same row and the later
    commit would silently undo the other's change. SQLite has no row locks; there the
    gateway's projection lock serializes the writers instead. ``_preload`` has usually
    locked and loaded every row a batch touches; then this reads the session, not the
    database.
    """
    client_id = key[0] if isinstance(key, tuple) else key
    if client_id in session.info.get(PRELOADED, ()):
        found = session.sync_session.identity_map.get(session.sync_session.identity_key(model, key))
        return found if isinstance(found, model) else None
    return await session.get(model, key, with_for_update=True)


async def _preload(session: AsyncSession, batch: list[tuple[Envelope[EventData], Delivery]]) -> None:
    """Lock and load, in two statements, the client and company rows the batch is about.

    Rows are locked in one order (clients, then companies, each by id), so two
    transactions never wait on each other in a cycle. Afterwards, a row a later event asks
    for is in the session, or does not exist yet (and is then created and flushed into it).
    """
    client_ids = sorted(
        {
            client_id
            for envelope, _ in batch
            if isinstance(client_id := getattr(envelope.data, "client_id", None), uuid.UUID)
        }
    )
    if not client_ids:
        return
    clients = await session.execute(
        select(ClientRow)
        .where(col(ClientRow.client_id).in_(client_ids))
        .order_by(col(ClientRow.client_id))
        .with_for_update()
    )
    companies = await session.execute(
        select(CompanyRow)
        .where(col(CompanyRow.client_id).in_(client_ids))
        .order_by(col(CompanyRow.client_id), col(CompanyRow.company_id))
        .with_for_update()
    )
    # The session's identity map holds rows weakly: these references keep the loaded rows,
    # and every row the batch creates, in it until the transaction ends.
    held: list[Any] = session.info.setdefault(HELD_ROWS, [])
    held.extend([*clients.scalars(), *companies.scalars()])
    if not event.contains(session.sync_session, "pending_to_persistent", _hold):
        event.listen(session.sync_session, "pending_to_persistent", _hold)
    session.info[PRELOADED] = set(client_ids)


def _hold(session: Session, instance: Any) -> None:
    session.info.setdefault(HELD_ROWS, []).append(instance)


async def _advance_position(session: AsyncSession, stream: str, sequence: int) -> None:
    position = await session.get(ProjectionPosition, stream)
    if position is None:
        session.add(ProjectionPosition(stream=stream, sequence=sequence))
    elif sequence > position.sequence:
        position.sequence = sequence


async def _client_companies(session: AsyncSession, client: ClientRow) -> list[CompanyRow]:
    rows = await session.execute(
        select(CompanyRow).where(col(CompanyRow.client_id) == client.client_id).with_for_update()
    )
    return list(rows.scalars())


async def _refresh_of(
    session: AsyncSession, envelope: Envelope[Any], refresh_id: uuid.UUID, client_id: uuid.UUID
) -> RefreshRow | None:
    """The recorded request of a refresh, if it is this firm's refresh of this client.

    Its RefreshRequested came earlier on the same stream, so it is there when asked for."""
    refresh = await session.get(RefreshRow, refresh_id)
    if refresh is None or refresh.firm_id != envelope.firm_id or refresh.client_id != client_id:
        return None
    return refresh


async def _apply_accountant(session: AsyncSession, envelope: Envelope[Any], sequence: int) -> None:
    data: AccountantJoined = envelope.data
    row = await session.get(AccountantRow, data.accountant_id)
    if row is not None and row.events_sequence >= sequence:
        return
    if row is None:
        row = AccountantRow(
            accountant_id=data.accountant_id,
            firm_id=envelope.firm_id,
            email=data.email,
            display_name=data.display_name,
            role=data.role.value,
        )
        session.add(row)
    row.email, row.display_name, row.role = data.email, data.display_name, data.role.value
    row.events_sequence = sequence


async def _apply_client_card(session: AsyncSession, envelope: Envelope[Any], sequence: int) -> None:
    data: ClientAdded | ClientUpdated = envelope.data
    row = await _locked(ClientRow, session, data.client_id)
    if row is not None and (row.events_sequence >= sequence or row.firm_id != envelope.firm_id):
        return
    if row is None:
        if isinstance(data, ClientUpdated):
            return  # an update of a client this model never saw added changes nothing
        row = ClientRow(
            client_id=data.client_id,
            firm_id=envelope.firm_id,
            name=data.card.name,
            client_url=data.card.client_url,
            tenant=data.connection.tenant,
            environment=data.connection.environment,
            card_json="{}",
            source=data.source.value,
            added_at=envelope.occurred_at,
        )
        session.add(row)
    row.name = data.card.name
    row.client_url = data.card.client_url
    row.tenant = data.connection.tenant
    row.tenant_id = data.connection.tenant_id
    row.environment = data.connection.environment
    row.company_name = data.connection.company_name
    row.card_json = data.card.model_dump_json()
    row.assigned_accountant_id = data.card.assigned_accountant_id
    row.events_sequence = sequence


async def _owned_client(
    session: AsyncSession, envelope: Envelope[Any], client_id: Any, sequence: int
) -> ClientRow | None:
    """The client an event is about, if it belongs to the event's firm and is not stale."""
    row = await _locked(ClientRow, session, client_id)
    if row is None or row.firm_id != envelope.firm_id or row.events_sequence >= sequence:
        return None
    return row


async def _apply_event(session: AsyncSession, envelope: Envelope[Any], sequence: int) -> None:
    data = envelope.data
    if isinstance(data, FirmCreated):
        firm = await session.get(FirmRow, envelope.firm_id)
        if firm is None:
            session.add(FirmRow(firm_id=envelope.firm_id, name=data.name, events_sequence=sequence))
    elif isinstance(data, AccountantJoined):
        await _apply_accountant(session, envelope, sequence)
    elif isinstance(data, ClientAdded | ClientUpdated):
        await _apply_client_card(session, envelope, sequence)
    elif isinstance(data, ClientRemoved):
        client = await _owned_client(session, envelope, data.client_id, sequence)
        if client is not None:
            client.removed = True
            client.events_sequence = sequence
    elif isinstance(data, RefreshRequested):
        await _apply_request(session, envelope, data, sequence)
    elif isinstance(data, CompaniesDiscovered):
        await _apply_discovery(session, envelope, data, sequence)
    elif isinstance(data, RefreshFailed):
        await _apply_failure(session, envelope, data, sequence)
    elif isinstance(data, RefreshDeferred):
        await _apply_deferral(session, envelope, data, sequence)
    elif isinstance(data, ConnectionTestRequested | ConnectionTested):
        await _apply_connection_test(session, envelope, data)
    elif isinstance(data, TenantAccessGranted | TenantAccessRevoked):
        await _apply_tenant_access(session, envelope, data, sequence)


async def _apply_tenant_access(
    session: AsyncSession,
    envelope: Envelope[Any],
    data: TenantAccessGranted | TenantAccessRevoked,
    sequence: int,
) -> None:
    row = await session.get(TenantAccessRow, (envelope.firm_id, data.tenant_id))
    if row is not None and row.events_sequence >= sequence:
        return
    if row is None:
        row = TenantAccessRow(
            firm_id=envelope.firm_id, tenant_id=data.tenant_id, granted=False, changed_at=envelope.occurred_at
        )
        session.add(row)
    row.granted = isinstance(data, TenantAccessGranted)
    if isinstance(data, TenantAccessGranted):
        row.method, row.granted_by, row.reason = data.method.value, data.granted_by, None
    else:
        row.reason = data.reason
    row.changed_at = envelope.occurred_at
    row.events_sequence = sequence


async def _apply_request(session: AsyncSession, envelope: Envelope[Any], data: RefreshRequested, sequence: int) -> None:
    client = await _owned_client(session, envelope, data.client_id, sequence)
    if client is None:
        return
    client.events_sequence = sequence
    if data.company_id is None:
        # The client's own state is what its row says while no company is known; a refresh
        # of one company leaves it alone.
        client.state = CompanyState.QUEUED
        client.next_attempt_at = None
    refresh = await session.get(RefreshRow, data.refresh_id)
    if refresh is None:
        refresh = RefreshRow(
            refresh_id=data.refresh_id,
            firm_id=envelope.firm_id,
            client_id=data.client_id,
            company_id=data.company_id,
            correlation_id=envelope.correlation_id,
            requested_at=envelope.occurred_at,
        )
        session.add(refresh)
    for company in await _client_companies(session, client):
        if _in_scope(refresh, company.company_id) and _pending_after(company, envelope, data.refresh_id):
            _show_pending(company, CompanyState.QUEUED)


async def _apply_connection_test(
    session: AsyncSession, envelope: Envelope[Any], data: ConnectionTestRequested | ConnectionTested
) -> None:
    row = await session.get(ConnectionTestRow, data.test_id)
    if row is not None and row.firm_id != envelope.firm_id:
        return
    if row is None:
        row = ConnectionTestRow(test_id=data.test_id, firm_id=envelope.firm_id, client_id=data.client_id)
        session.add(row)
    if isinstance(data, ConnectionTestRequested) or (isinstance(data, ConnectionTested) and data.connection):
        assert data.connection is not None
        row.tenant, row.environment = data.connection.tenant, data.connection.environment
    if isinstance(data, ConnectionTested):
        row.result_json = data.model_dump_json()
        row.tested_at = envelope.occurred_at
        if data.failure is not None:
            await _record_failure(
                session,
                envelope,
                data.failure,
                origin="connection_test",
                client_id=data.client_id,
                tenant=row.tenant,
                environment=row.environment,
            )


async def _record_failure(
    session: AsyncSession,
    envelope: Envelope[Any],
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
    if await session.get(FailureRow, envelope.id) is not None:
        return
    session.add(
        FailureRow(
            failure_id=envelope.id,
            firm_id=envelope.firm_id,
            origin=origin,
            client_id=client_id,
            company_id=company_id,
            company_name=company_name,
            tenant=tenant,
            environment=environment,
            kind=failure.kind.value,
            failure_json=_failure_json(failure),
            occurred_at=failure.occurred_at,
            attempt=deferral.attempt if deferral else None,
            next_attempt_at=deferral.next_attempt_at if deferral else None,
        )
    )


async def _end_waiting(
    session: AsyncSession,
    *,
    firm_id: uuid.UUID,
    client_id: uuid.UUID,
    company_id: uuid.UUID | None,
    before: datetime,
) -> None:
    """Take from Check Errors the waits for a retry that a later outcome replaced.

    ``company_id`` None is the client's own wait (its BC could not be reached at all). Only
    waits that began before the outcome end, so the result is the same whichever of a
    snapshot and a deferral, which travel on different streams, is projected first.
    """
    scope = col(FailureRow.company_id).is_(None) if company_id is None else col(FailureRow.company_id) == company_id
    ended = await session.execute(
        delete(FailureRow)
        .where(
            col(FailureRow.firm_id) == firm_id,
            col(FailureRow.client_id) == client_id,
            scope,
            col(FailureRow.next_attempt_at).is_not(None),
            col(FailureRow.occurred_at) < before,
        )
        .execution_options(synchronize_session="fetch")
    )
    if getattr(ended, "rowcount", 0):
        session.info.setdefault(CHECK_ERRORS_CHANGED, set()).add(firm_id)


async def _apply_discovery(
    session: AsyncSession, envelope: Envelope[Any], data: CompaniesDiscovered, sequence: int
) -> None:
    client = await _owned_client(session, envelope, data.client_id, sequence)
    if client is None:
        return
    client.events_sequence = sequence
    client.state = CompanyState.OK
    client.failure_json = None
    client.next_attempt_at = None
    # The client's BC answered: no wait to reach it is pending any more.
    await _end_waiting(
        session, firm_id=client.firm_id, client_id=client.client_id, company_id=None, before=envelope.occurred_at
    )
    refresh = await _refresh_of(session, envelope, data.refresh_id, data.client_id)
    discovered = [company for company in _unique(data) if _in_scope(refresh, company.company_id)]
    if refresh is not None:
        refresh.companies_found = len(discovered)
    existing = {row.company_id: row for row in await _client_companies(session, client)}
    found = {company.company_id for company in discovered}
    for company_id, gone in existing.items():
        if company_id not in found and _in_scope(refresh, company_id):
            # The company is gone from the client's BC (deleted or access withdrawn).
            await session.delete(gone)
    for company in discovered:
        row = existing.get(company.company_id)
        if row is None:
            row = CompanyRow(
                client_id=client.client_id,
                company_id=company.company_id,
                firm_id=client.firm_id,
                company_name=company.name,
            )
            session.add(row)
        if _newer_outcome(row, envelope.occurred_at):
            # The newest reading of the company names it (a snapshot may be newer).
            row.company_name = company.name
            row.display_name = company.display_name
        if _pending_after(row, envelope, data.refresh_id):
            _show_pending(row, CompanyState.REFRESHING)
        row.events_sequence = max(row.events_sequence, sequence)


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


async def _apply_failure(session: AsyncSession, envelope: Envelope[Any], data: RefreshFailed, sequence: int) -> None:
    client = await _locked(ClientRow, session, data.client_id)
    if client is not None and client.firm_id != envelope.firm_id:
        return
    failure = _failure_json(data.failure)
    await _record_failure(
        session,
        envelope,
        data.failure,
        origin="refresh",
        client_id=data.client_id,
        company_id=data.company_id,
        company_name=data.company_name,
        tenant=client.tenant if client else None,
        environment=client.environment if client else None,
    )
    if client is None:
        if data.company_id is None:
            return  # a client-level failure follows its ClientAdded on the same stream
    elif data.company_id is None:
        if client.events_sequence >= sequence:
            return
        client.events_sequence = sequence
        client.state = CompanyState.FAILED
        client.failure_json = failure
        client.next_attempt_at = None
        failed_at = data.failure.occurred_at
        await _end_waiting(
            session, firm_id=client.firm_id, client_id=client.client_id, company_id=None, before=failed_at
        )
        refresh = await _refresh_of(session, envelope, data.refresh_id, data.client_id)
        if refresh is not None:
            refresh.failed = True
        for company in await _client_companies(session, client):
            if _in_scope(refresh, company.company_id) and _newer_outcome(company, failed_at):
                _show_failure(company, failure, data)
                await _end_waiting(
                    session,
                    firm_id=client.firm_id,
                    client_id=client.client_id,
                    company_id=company.company_id,
                    before=failed_at,
                )
        return
    existing = await _locked(CompanyRow, session, (data.client_id, data.company_id))
    if existing is not None and (
        existing.events_sequence >= sequence
        # Older than the outcome shown (which came later, on the other stream).
        or not _newer_outcome(existing, data.failure.occurred_at)
    ):
        return
    row = existing or CompanyRow(
        client_id=data.client_id,
        company_id=data.company_id,
        firm_id=envelope.firm_id,
        company_name=data.company_name or str(data.company_id),
    )
    session.add(row)
    _show_failure(row, failure, data)
    row.events_sequence = sequence
    await _end_waiting(
        session,
        firm_id=envelope.firm_id,
        client_id=data.client_id,
        company_id=data.company_id,
        before=data.failure.occurred_at,
    )


async def _apply_deferral(session: AsyncSession, envelope: Envelope[Any], data: RefreshDeferred, sequence: int) -> None:
    """A refresh will be tried again: the rows it is about, and Check Errors, say so at once."""
    client = await _locked(ClientRow, session, data.client_id)
    if client is None or client.firm_id != envelope.firm_id:
        return  # a deferral follows its client's ClientAdded on the same stream
    waiting_since = data.failure.occurred_at
    if data.company_id is None:
        if client.events_sequence >= sequence:
            return
        client.events_sequence = sequence
        _show_waiting(client, data)
        refresh = await _refresh_of(session, envelope, data.refresh_id, data.client_id)
        for company in await _client_companies(session, client):
            if _in_scope(refresh, company.company_id) and _newer_outcome(company, waiting_since):
                _show_waiting(company, data)
    else:
        existing = await _locked(CompanyRow, session, (data.client_id, data.company_id))
        if existing is not None and (
            existing.events_sequence >= sequence or not _newer_outcome(existing, waiting_since)
        ):
            return  # replayed, or a later outcome (maybe of this very retry) is shown already
        row = existing or CompanyRow(
            client_id=data.client_id,
            company_id=data.company_id,
            firm_id=envelope.firm_id,
            company_name=data.company_name or str(data.company_id),
        )
        session.add(row)
        _show_waiting(row, data)
        row.events_sequence = sequence
    # This attempt's wait replaces the wait of an earlier attempt of the same scope.
    await _end_waiting(
        session, firm_id=client.firm_id, client_id=client.client_id, company_id=data.company_id, before=waiting_since
    )
    await _record_failure(
        session,
        envelope,
        data.failure,
        origin="refresh",
        client_id=data.client_id,
        company_id=data.company_id,
        company_name=data.company_name,
        tenant=client.tenant,
        environment=client.environment,
        deferral=data,
    )


async def _apply_snapshot(session: AsyncSession, envelope: Envelope[Any], sequence: int, applied_at: datetime) -> None:
    data: CompanySnapshot = envelope.data
    client = await _locked(ClientRow, session, data.client_id)
    if client is not None and client.firm_id != envelope.firm_id:
        return
    # A snapshot may arrive before its client's ClientAdded (another stream): keep it under
    # the event's firm; the dashboard shows it once the client row exists.
    existing = await _locked(CompanyRow, session, (data.client_id, data.company_id))
    if existing is not None and (
        existing.snapshot_sequence >= sequence or (existing.as_of is not None and existing.as_of > data.read_at)
    ):
        return
    row = existing or CompanyRow(
        client_id=data.client_id,
        company_id=data.company_id,
        firm_id=envelope.firm_id,
        company_name=data.company_name,
    )
    session.add(row)
    if _newer_outcome(row, data.read_at):
        # Newer figures always show; the state only if nothing later (a failure, a wait for
        # a retry) happened to the company, whichever stream was projected first.
        row.outcome_refresh_id = data.refresh_id
        row.outcome_at = data.read_at
        row.state = CompanyState.OK
        row.failure_json = None
        row.next_attempt_at = None
    await _end_waiting(
        session, firm_id=row.firm_id, client_id=data.client_id, company_id=data.company_id, before=data.read_at
    )
    row.company_name = data.company_name
    row.display_name = data.company_display_name
    row.as_of = data.read_at
    row.currency_code = data.currency_code
    for attribute, value in figure_values(data.figures).items():
        setattr(row, attribute, value)
    row.figures_json = json.dumps(data.figures.model_dump(mode="json"))
    row.web_client_link = data.web_client_link
    row.snapshot_sequence = sequence
    row.snapshot_applied_at = applied_at


def _note_change(changes: Changes, envelope: Envelope[Any]) -> None:
    data = envelope.data
    client_id = getattr(data, "client_id", None)
    if isinstance(client_id, uuid.UUID):
        changes.client(envelope.firm_id, client_id)
    if isinstance(data, RefreshFailed | RefreshDeferred) or (
        isinstance(data, ConnectionTested) and data.failure is not None
    ):
        changes.firms_with_new_failures.add(envelope.firm_id)


async def apply_batch(
    session: AsyncSession,
    batch: list[tuple[Envelope[EventData], Delivery]],
    applied_at: datetime,
) -> Changes:
    """Apply events in stream order and advance each stream's position, in one transaction."""
    changes = Changes()
    positions: dict[str, int] = {}
    await _preload(session, batch)
    for envelope, delivery in batch:
        if isinstance(envelope.data, CompanySnapshot):
            await _apply_snapshot(session, envelope, delivery.stream_sequence, applied_at)
        else:
            await _apply_event(session, envelope, delivery.stream_sequence)
        positions[delivery.stream] = max(positions.get(delivery.stream, 0), delivery.stream_sequence)
        await session.flush()
        _note_change(changes, envelope)
    # Each stream's high-water mark, once per batch, in the same transaction.
    for stream, sequence in positions.items():
        await _advance_position(session, stream, sequence)
    changes.firms_with_new_failures |= session.info.pop(CHECK_ERRORS_CHANGED, set())
    return changes
