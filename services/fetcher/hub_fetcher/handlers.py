"""What the fetcher does with each event it consumes.

Every event it publishes has an id derived from the message it handles, so a redelivered
refresh re-publishes the same ids and JetStream's duplicate window drops them.

Acknowledgement rules:
* a transient failure (throttled, offline, timeout, BC failing inside) asks for a redelivery with a delay,
  honouring Retry-After, until the last delivery, which reports it as RefreshFailed. Before
  the nack, RefreshDeferred says so at once ("waiting: … next try at HH:MM"), one per
  company that will be read again (or one for the client when discovery failed), under ids
  derived from the message and its delivery number, so a redelivery adds its own. The
  redelivery reads only the companies that did not settle before (``refresh_progress``);
* a permanent failure is published as RefreshFailed, then the message is acked.

A refresh has a deadline for everything it reads (``HUB_REFRESH_DEADLINE_SECONDS``), on top
of each request's own: the companies not read by then end as ``timeout``.

Each refresh is a ``refresh`` span, and is counted and timed by outcome
(``hub_refreshes_total``, ``hub_refresh_duration_seconds``): ``ok``, ``deferred`` or the kind
of its (first) failure.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar

from nats.js import JetStreamContext

from hub_common import grants, metrics
from hub_common.bus import publish_event
from hub_common.consumers import Delivery, Retry
from hub_common.events import (
    Actor,
    ClientAdded,
    ClientConnection,
    CompaniesDiscovered,
    CompanySnapshot,
    ConnectionTested,
    ConnectionTestRequested,
    DiscoveredCompany,
    Envelope,
    EventData,
    FailureKind,
    NotificationSubscriptionsChecked,
    RefreshDeferred,
    RefreshFailed,
    RefreshRequested,
    derived_id,
    first_refresh_id,
    new_envelope,
)
from hub_common.logging import get_logger
from hub_common.streams import FETCHER_CONSUMER, ConsumerSpec
from hub_common.tracing import tracer
from hub_fetcher import refresh_progress
from hub_fetcher.bc.entities import Company
from hub_fetcher.bc.failures import FetchFailure
from hub_fetcher.figures.company import ChosenAccounts
from hub_fetcher.notifications.subscriptions import NotificationSubscriptions
from hub_fetcher.refresh import ClientReader, Discovery

logger = get_logger(__name__)

FETCHER_ACTOR = Actor.service("fetcher")
# BC lets an identity run 5 requests at once per tenant; more companies in flight only queue.
COMPANIES_AT_ONCE = 5
# The longest a refresh waits for its next try, whatever Retry-After asks.
MAX_RETRY_DELAY_SECONDS = 300.0


@dataclass(frozen=True)
class Refresh:
    """What one refresh reads: a client's companies (or one of them), with its own rules."""

    client_id: uuid.UUID
    connection: ClientConnection
    refresh_id: uuid.UUID
    only_company: uuid.UUID | None
    chosen_accounts: ChosenAccounts
    # The client card's IANA time zone, whose date is "today" for the figures (None: UTC).
    time_zone: str | None


def record_refresh(outcome: str, started: float) -> None:
    """Count and time one refresh by how it ended (``started``: ``time.monotonic()``)."""
    metrics.refreshes_total.labels(outcome=outcome).inc()
    metrics.refresh_duration_seconds.labels(outcome=outcome).observe(time.monotonic() - started)


ResultT = TypeVar("ResultT")


# The share of a refresh's deadline its upkeep of change notifications may take, so a slow
# notification address leaves the companies' reads the rest.
NOTIFICATION_UPKEEP_SHARE = 0.25


class RefreshDeadline:
    """One refresh's deadline for reading BC; each read is bounded by what is left of it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._at = asyncio.get_running_loop().time() + seconds

    async def run(self, read: Awaitable[ResultT]) -> ResultT:
        """``read``'s result, or a ``timeout`` failure once the deadline has passed."""
        timer = asyncio.timeout_at(self._at)
        try:
            async with timer:
                return await read
        except TimeoutError as error:
            if not timer.expired():
                raise  # a timeout of something else inside, not the refresh's deadline
            raise FetchFailure(
                FailureKind.TIMEOUT,
                message=f"the refresh did not finish within {self.seconds:g} s (HUB_REFRESH_DEADLINE_SECONDS)",
            ) from error


class FetcherHandlers:
    def __init__(
        self,
        reader: ClientReader,
        js: JetStreamContext,
        consumer: ConsumerSpec = FETCHER_CONSUMER,
        *,
        refresh_deadline_seconds: float,
        notifications: NotificationSubscriptions | None = None,
    ) -> None:
        self._reader = reader
        self._notifications = notifications
        self._js = js
        self._refresh_deadline_seconds = refresh_deadline_seconds
        # The durable as declared (its ack wait and max_deliver come from settings).
        self._consumer = consumer
        # Progress is reported three times per ack wait, so a live refresh is never redelivered.
        self._keep_alive_seconds = consumer.ack_wait_seconds / 3

    async def _publish(self, cause: Envelope[Any], data: EventData, purpose: str) -> None:
        envelope = new_envelope(
            data,
            firm_id=cause.firm_id,
            actor=FETCHER_ACTOR,
            causation=cause,
            event_id=derived_id(cause, purpose),
        )
        await publish_event(self._js, envelope)

    async def _refused_without_grant(self, envelope: Envelope[EventData]) -> bool:
        """Read a tenant only for a firm it granted access; otherwise say so and read nothing.

        The hub has one app identity, which every consenting tenant lets in: this check, not
        Entra, is what keeps one firm out of another firm's clients.
        """
        data = envelope.data
        if not isinstance(data, ClientAdded | RefreshRequested | ConnectionTestRequested):
            return False
        if await grants.has_access(self._js, envelope.firm_id, data.connection.tenant_id):
            return False
        failure = FetchFailure(
            FailureKind.ACCESS_NOT_GRANTED, message=f"no grant of tenant {data.connection.tenant} for this firm"
        ).to_failure()
        logger.info("read refused: no grant", tenant=data.connection.tenant)
        if isinstance(data, ConnectionTestRequested):
            await self._publish(
                envelope,
                ConnectionTested(test_id=data.test_id, client_id=data.client_id, ok=False, failure=failure),
                "tested",
            )
        else:
            refresh_id = data.refresh_id if isinstance(data, RefreshRequested) else first_refresh_id(envelope)
            await self._publish(
                envelope,
                RefreshFailed(
                    refresh_id=refresh_id,
                    client_id=data.client_id,
                    company_id=data.company_id if isinstance(data, RefreshRequested) else None,
                    failure=failure,
                    accounts_revision=data.accounts_revision if isinstance(data, RefreshRequested) else 0,
                ),
                "failed",
            )
        return True

    async def handle(self, envelope: Envelope[EventData], delivery: Delivery) -> None:
        data = envelope.data
        started = time.monotonic()
        if await self._refused_without_grant(envelope):
            if not isinstance(data, ConnectionTestRequested):
                record_refresh(FailureKind.ACCESS_NOT_GRANTED.value, started)
            return
        async with delivery.keep_alive(self._keep_alive_seconds):
            if isinstance(data, ClientAdded):
                await self._refresh(
                    envelope,
                    delivery,
                    Refresh(
                        data.client_id,
                        data.connection,
                        first_refresh_id(envelope),
                        None,
                        ChosenAccounts.of(taxes=data.card.tax_account_numbers, cash=data.card.cash_account_numbers),
                        data.card.time_zone,
                    ),
                )
            elif isinstance(data, RefreshRequested):
                await self._refresh(
                    envelope,
                    delivery,
                    Refresh(
                        data.client_id,
                        data.connection,
                        data.refresh_id,
                        data.company_id,
                        ChosenAccounts.of(
                            taxes=data.tax_account_numbers,
                            cash=data.cash_account_numbers,
                            revision=data.accounts_revision,
                        ),
                        data.time_zone,
                    ),
                )
            elif isinstance(data, ConnectionTestRequested):
                await self._test_connection(envelope, data)

    def _should_retry(self, failure: FetchFailure, delivery: Delivery) -> bool:
        return failure.transient and delivery.num_delivered < self._consumer.max_deliver

    async def _defer(
        self,
        envelope: Envelope[Any],
        delivery: Delivery,
        refresh: Refresh,
        deferred: Sequence[tuple[Company | None, FetchFailure]],
    ) -> NoReturn:
        """Say when the next try will be, then ask for it (a nack with that delay)."""
        longest = max((failure for _, failure in deferred), key=lambda f: f.retry_after_seconds or 0)
        delay = min(
            longest.retry_after_seconds or self._consumer.retry_delay(delivery.num_delivered),
            MAX_RETRY_DELAY_SECONDS,
        )
        next_attempt_at = datetime.now(UTC) + timedelta(seconds=delay)
        for company, failure in deferred:
            await self._publish(
                envelope,
                RefreshDeferred(
                    refresh_id=refresh.refresh_id,
                    client_id=refresh.client_id,
                    company_id=company.id if company else None,
                    company_name=company.name if company else None,
                    failure=failure.to_failure(),
                    refresh_company_id=None if company else refresh.only_company,
                    attempt=delivery.num_delivered,
                    next_attempt_at=next_attempt_at,
                    accounts_revision=refresh.chosen_accounts.revision,
                ),
                f"deferred:{company.id if company else 'client'}:{delivery.num_delivered}",
            )
        logger.info(
            "refresh deferred",
            kind=longest.kind.value,
            client_id=str(refresh.client_id),
            companies=len(deferred),
            delay_seconds=delay,
        )
        raise Retry(f"{longest.kind.value}: {longest.message}", delay_seconds=delay)

    async def _refresh(self, envelope: Envelope[Any], delivery: Delivery, refresh: Refresh) -> None:
        started = time.monotonic()
        with tracer.start_as_current_span("refresh") as span:
            span.set_attribute("hub.refresh_id", str(refresh.refresh_id))
            span.set_attribute("hub.delivery", delivery.num_delivered)
            # An unexpected error leaves no outcome: the message is redelivered and counted then.
            outcome: str | None = None
            try:
                outcome = await self._read_client(envelope, delivery, refresh)
            except Retry:
                outcome = metrics.REFRESH_DEFERRED
                raise
            finally:
                if outcome is not None:
                    span.set_attribute("hub.outcome", outcome)
                    record_refresh(outcome, started)

    async def _read_client(self, envelope: Envelope[Any], delivery: Delivery, refresh: Refresh) -> str:
        """Read the refresh's companies and publish what came of each; returns the outcome."""
        client_id, connection, refresh_id = refresh.client_id, refresh.connection, refresh.refresh_id
        deadline = RefreshDeadline(self._refresh_deadline_seconds)
        try:
            discovery = await deadline.run(self._reader.discover(connection))
        except FetchFailure as failure:
            if self._should_retry(failure, delivery):
                await self._defer(envelope, delivery, refresh, [(None, failure)])
            logger.info("refresh failed", kind=failure.kind.value, client_id=str(client_id))
            await self._publish(
                envelope,
                RefreshFailed(
                    refresh_id=refresh_id,
                    client_id=client_id,
                    failure=failure.to_failure(),
                    refresh_company_id=refresh.only_company,
                    accounts_revision=refresh.chosen_accounts.revision,
                ),
                "failed",
            )
            return failure.kind.value
        await self._publish(
            envelope,
            CompaniesDiscovered(
                client_id=client_id,
                refresh_id=refresh_id,
                companies=[
                    DiscoveredCompany(company_id=c.id, name=c.name, display_name=c.display_name)
                    for c in discovery.companies
                ],
                refresh_company_id=refresh.only_company,
                accounts_revision=refresh.chosen_accounts.revision,
            ),
            "discovered",
        )
        wanted = [c for c in discovery.companies if refresh.only_company in (None, c.id)]
        settled_before = (
            await refresh_progress.settled_companies(self._js, envelope.id)
            if delivery.num_delivered > 1
            else frozenset()
        )
        companies = [c for c in wanted if c.id not in settled_before]
        # Subscribed before they are read: BC notifies only changes made once a subscription
        # exists, so a change made while a company is read is still notified.
        await self._keep_subscriptions(
            envelope,
            refresh,
            companies,
            discovered=[c.id for c in discovery.companies] if refresh.only_company is None else None,
        )
        # Companies are read side by side; the tenant's shared slots keep BC's 5 at a time.
        at_once = asyncio.Semaphore(COMPANIES_AT_ONCE)
        failed: list[FailureKind] = []

        async def read_one(company: Company) -> CompanySnapshot:
            async with at_once:
                return await self._reader.snapshot(
                    connection,
                    company,
                    client_id=client_id,
                    refresh_id=refresh_id,
                    chosen_accounts=refresh.chosen_accounts,
                    time_zone=refresh.time_zone,
                )

        async def read(company: Company) -> FetchFailure | None:
            """Publish the company's outcome; a transient failure is returned for a retry."""
            try:
                snapshot = await deadline.run(read_one(company))
            except FetchFailure as failure:
                if self._should_retry(failure, delivery):
                    return failure
                failed.append(failure.kind)
                await self._publish(
                    envelope,
                    RefreshFailed(
                        refresh_id=refresh_id,
                        client_id=client_id,
                        company_id=company.id,
                        company_name=company.name,
                        failure=failure.to_failure(),
                        accounts_revision=refresh.chosen_accounts.revision,
                    ),
                    f"failed:{company.id}",
                )
                return None
            await self._publish(envelope, snapshot, f"snapshot:{company.id}")
            return None

        outcomes = await asyncio.gather(*map(read, companies))
        deferred = [(company, failure) for company, failure in zip(companies, outcomes, strict=True) if failure]
        if deferred:
            settled_now = {company.id for company, failure in zip(companies, outcomes, strict=True) if not failure}
            await refresh_progress.record_settled(self._js, envelope.id, settled_before | settled_now)
            await self._defer(envelope, delivery, refresh, deferred)
        logger.info("refresh done", client_id=str(client_id), companies=len(discovery.companies))
        return failed[0].value if failed else metrics.REFRESH_OK

    async def _keep_subscriptions(
        self,
        envelope: Envelope[Any],
        refresh: Refresh,
        companies: list[Company],
        *,
        discovered: list[uuid.UUID] | None,
    ) -> None:
        """Subscribe the companies about to be read to BC's change notifications (or renew
        them); ``discovered`` (a refresh of the whole client): every company it has.

        Whatever happens here is recorded as the companies' notification state and never
        fails the refresh: the companies are read all the same.
        """
        if self._notifications is None:
            return

        async def record(event: NotificationSubscriptionsChecked) -> None:
            await self._publish(envelope, event, f"notifications:{event.company_id}")

        try:
            await self._notifications.keep(
                self._reader.environment(refresh.connection),
                firm_id=envelope.firm_id,
                client_id=refresh.client_id,
                companies=companies,
                record=record,
                discovered=discovered,
                within_seconds=self._refresh_deadline_seconds * NOTIFICATION_UPKEEP_SHARE,
            )
        except Exception:
            logger.exception("keeping the change notifications failed", client_id=str(refresh.client_id))

    async def _test_connection(self, envelope: Envelope[Any], data: ConnectionTestRequested) -> None:
        # A test answers a person who is waiting: one attempt, classified, no retries.
        async def discover_and_probe() -> tuple[Discovery, list[uuid.UUID], FetchFailure | None]:
            discovery = await self._reader.discover(data.connection)
            unreadable, why = await self._reader.unreadable(data.connection, discovery.companies)
            return discovery, unreadable, why

        try:
            discovery, unreadable, why = await RefreshDeadline(self._refresh_deadline_seconds).run(discover_and_probe())
        except FetchFailure as failure:
            result = ConnectionTested(
                test_id=data.test_id, client_id=data.client_id, ok=False, failure=failure.to_failure()
            )
        else:
            result = ConnectionTested(
                test_id=data.test_id,
                client_id=data.client_id,
                ok=True,
                latency_ms=discovery.latency_ms,
                companies=[
                    DiscoveredCompany(company_id=c.id, name=c.name, display_name=c.display_name)
                    for c in discovery.companies
                ],
                unreadable_company_ids=unreadable,
                unreadable_failure=why.to_failure() if why is not None else None,
            )
        await self._publish(envelope, result, "tested")
