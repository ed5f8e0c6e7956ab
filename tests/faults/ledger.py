"""Counting what a firm's refreshes ended in, in the streams and in the read model.

The rule every fault test checks: each refresh (a RefreshRequested, or the refresh a
ClientAdded starts) ends in exactly one outcome per company of its client: one
CompanySnapshot, or one RefreshFailed for the company, or one RefreshFailed for the whole
client. Nothing lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import nats.errors
from nats.js import JetStreamContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hub_common.events import (
    ClientAdded,
    CompaniesDiscovered,
    CompanySnapshot,
    InvalidEvent,
    RefreshFailed,
    RefreshRequested,
    decode_event,
    first_refresh_id,
)
from hub_common.streams import (
    EVENTS_STREAM,
    FETCHER_CONSUMER,
    GATEWAY_EVENTS_CONSUMER,
    GATEWAY_SNAPSHOTS_CONSUMER,
    SNAPSHOTS_STREAM,
)

SETTLED_STATES = frozenset({"ok", "failed"})
Companies = Mapping[uuid.UUID, frozenset[uuid.UUID]]  # the companies of each client


async def wait_until(
    what: str, check: Callable[[], Awaitable[bool]], *, timeout: float, details: Callable[[], str] = lambda: ""
) -> None:
    """Poll ``check`` until it holds; fail with ``what`` (and the details) at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await check():
                return
        except (TimeoutError, nats.errors.NoRespondersError):
            pass  # the broker (or a cluster electing a stream leader) did not answer yet
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:.0f} s\n{details()}")


@dataclass(frozen=True)
class Request:
    client_id: uuid.UUID
    company_id: uuid.UUID | None  # None: every company of the client


@dataclass
class Ledger:
    """Every refresh of one firm and every outcome, as the streams hold them."""

    # In stream order, so the last request of a client is the one its rows must show.
    requested: dict[uuid.UUID, Request] = field(default_factory=dict)
    # How many times each request is stored (more than once only if published twice).
    requests_stored: Counter[uuid.UUID] = field(default_factory=Counter)
    discovered: Counter[uuid.UUID] = field(default_factory=Counter)
    snapshots: Counter[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=Counter)
    failures: Counter[tuple[uuid.UUID, uuid.UUID | None]] = field(default_factory=Counter)
    # When each outcome happened (a snapshot's read time, a failure's time): the read model
    # shows, per company, the outcome that happened last, whatever order they arrived in.
    outcome_times: dict[tuple[uuid.UUID, uuid.UUID | None], datetime] = field(default_factory=dict)
    invalid_messages: int = 0
    # Whether every message the streams held for the firm when reading began was read: a
    # read stops short when the broker is restarting, and a short read must not pass for
    # the whole log (the requests it missed would go unchecked).
    complete: bool = True

    def outcomes(self, refresh_id: uuid.UUID, company_id: uuid.UUID) -> int:
        return (
            self.snapshots[(refresh_id, company_id)]
            + self.failures[(refresh_id, company_id)]
            + self.failures[(refresh_id, None)]
        )

    def expected(self, companies: Companies) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """(refresh, company) pairs that must each end in exactly one outcome."""
        pairs: list[tuple[uuid.UUID, uuid.UUID]] = []
        for refresh_id, request in self.requested.items():
            wanted = companies[request.client_id] if request.company_id is None else {request.company_id}
            pairs.extend((refresh_id, company) for company in sorted(wanted))
        return pairs

    def miscounted(self, companies: Companies) -> list[str]:
        """Every (refresh, company) whose outcome count is not exactly one, and why."""
        problems = [
            f"refresh {refresh_id} company {company}: {count} outcomes"
            for refresh_id, company in self.expected(companies)
            if (count := self.outcomes(refresh_id, company)) != 1
        ]
        unknown = {refresh for refresh, _ in self.snapshots} - set(self.requested)
        problems.extend(f"snapshot of refresh {refresh} that was never requested" for refresh in unknown)
        return problems

    def settled(self, companies: Companies) -> bool:
        return all(self.outcomes(refresh, company) >= 1 for refresh, company in self.expected(companies))

    def newest_outcome(self, client_id: uuid.UUID, company_id: uuid.UUID) -> uuid.UUID | None:
        """The refresh whose outcome for the company happened last: the one its row must show."""
        times = {
            refresh: when
            for refresh, request in self.requested.items()
            if request.client_id == client_id
            for key in ((refresh, company_id), (refresh, None))
            if (when := self.outcome_times.get(key)) is not None
        }
        return max(times, key=lambda refresh: times[refresh]) if times else None


async def read_ledger(js: JetStreamContext, firm_id: uuid.UUID) -> Ledger:
    """Everything of the firm in both streams, read with ordered consumers up to their end."""
    ledger = Ledger()
    for stream, subject in (
        (EVENTS_STREAM, f"hub.{firm_id}.>"),
        (SNAPSHOTS_STREAM, f"hub.{firm_id}.company.*.snapshot"),
    ):
        held = (await js.stream_info(stream, subjects_filter=subject)).state.subjects or {}
        if not sum(held.values()):
            continue
        subscription = await js.subscribe(subject, stream=stream, ordered_consumer=True)
        read = 0
        try:
            while True:
                try:
                    message = await subscription.next_msg(timeout=10)
                except nats.errors.TimeoutError:
                    break  # the broker is restarting; the caller reads again
                _record(ledger, message.data)
                read += 1
                if message.metadata.num_pending == 0:
                    break
        finally:
            await subscription.unsubscribe()
        ledger.complete = ledger.complete and read >= sum(held.values())
    return ledger


def _record(ledger: Ledger, payload: bytes) -> None:
    try:
        envelope = decode_event(payload)
    except InvalidEvent:
        ledger.invalid_messages += 1
        return
    data = envelope.data
    if isinstance(data, ClientAdded):
        # The fetcher refreshes a client it is told about, under an id derived from the event.
        refresh_id = first_refresh_id(envelope)
        ledger.requested[refresh_id] = Request(data.client_id, None)
        ledger.requests_stored[refresh_id] += 1
    elif isinstance(data, RefreshRequested):
        ledger.requested[data.refresh_id] = Request(data.client_id, data.company_id)
        ledger.requests_stored[data.refresh_id] += 1
    elif isinstance(data, CompaniesDiscovered):
        ledger.discovered[data.refresh_id] += 1
    elif isinstance(data, CompanySnapshot):
        ledger.snapshots[(data.refresh_id, data.company_id)] += 1
        ledger.outcome_times[(data.refresh_id, data.company_id)] = data.read_at
    elif isinstance(data, RefreshFailed):
        ledger.failures[(data.refresh_id, data.company_id)] += 1
        ledger.outcome_times[(data.refresh_id, data.company_id)] = data.failure.occurred_at


async def consumers_idle(js: JetStreamContext) -> bool:
    """Nothing waiting for or held by the fetchers and the projections."""
    for spec in (FETCHER_CONSUMER, GATEWAY_EVENTS_CONSUMER, GATEWAY_SNAPSHOTS_CONSUMER):
        info = await js.consumer_info(spec.stream, spec.durable)
        if info.num_pending or info.num_ack_pending:
            return False
    return True


async def read_model_problems(
    engine: AsyncEngine, firm_id: uuid.UUID, ledger: Ledger, companies: Companies
) -> list[str]:
    """Each company row must exist, be settled and show its newest outcome."""
    rows = await company_outcomes(engine, firm_id)
    problems = []
    for client_id, client_companies in companies.items():
        for company in sorted(client_companies):
            newest = ledger.newest_outcome(client_id, company)
            row = rows.get(company)
            if row is None:
                problems.append(f"company {company}: no row")
            elif row[0] not in SETTLED_STATES or row[1] != newest:
                problems.append(f"company {company}: {row[0]} after refresh {row[1]}, expected {newest}")
    return problems


async def company_outcomes(engine: AsyncEngine, firm_id: uuid.UUID) -> dict[uuid.UUID, tuple[str, uuid.UUID | None]]:
    """Each company row of the firm in the read model: its state and the refresh it shows."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT company_id, state, outcome_refresh_id FROM gateway_companies WHERE firm_id = :firm"),
            {"firm": firm_id if engine.dialect.name == "postgresql" else firm_id.hex},
        )
        return {_uuid(row[0]): (row[1], _uuid(row[2]) if row[2] else None) for row in rows}


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


async def assert_every_refresh_ended_once(
    js: JetStreamContext,
    engine: AsyncEngine,
    firm_id: uuid.UUID,
    companies: Companies,
    *,
    timeout: float,
    answered: Iterable[uuid.UUID] = (),
    details: Callable[[], str] = lambda: "",
) -> Ledger:
    """Wait until every refresh of the firm has settled and nothing is left to deliver, then
    count: exactly one outcome per company in the streams, and the read model shows each.

    ``answered`` are the refreshes the registry answered commands with: it commits them and
    its outbox relay publishes them afterwards, later still while the broker or the lease
    changes hands, so the wait also covers each of them reaching the log."""
    ledger = Ledger()
    answered = frozenset(answered)

    async def settled() -> bool:
        nonlocal ledger
        ledger = await read_ledger(js, firm_id)
        return ledger.complete and answered <= ledger.requested.keys() and ledger.settled(companies)

    await wait_until("every refresh has an outcome per company", settled, timeout=timeout, details=details)
    # Only once nothing is pending or held could a late duplicate no longer appear.
    await wait_until("the consumers are idle", lambda: consumers_idle(js), timeout=timeout, details=details)

    async def read_whole() -> bool:
        nonlocal ledger
        ledger = await read_ledger(js, firm_id)
        return ledger.complete

    await wait_until("the whole log read", read_whole, timeout=timeout, details=details)
    assert not ledger.miscounted(companies), ledger.miscounted(companies)
    problems: list[str] = []

    async def projected() -> bool:
        # The log read again each time: a refresh the registry committed before the wait but
        # published after the log was read (the refresh a Connect starts, through the outbox)
        # is one the rows may already show.
        nonlocal ledger
        latest = await read_ledger(js, firm_id)
        if not (latest.complete and latest.settled(companies)):
            problems[:] = ["the log read short, or a refresh requested since it was first read has not ended yet"]
            return False
        assert not latest.miscounted(companies), latest.miscounted(companies)
        ledger = latest
        problems[:] = await read_model_problems(engine, firm_id, ledger, companies)
        return not problems

    await wait_until("the read model shows every outcome", projected, timeout=timeout, details=lambda: str(problems))
    return ledger
