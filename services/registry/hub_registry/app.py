"""Wiring of the registry: broker, command handlers, outbox relay, migrations."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from faststream import FastStream

from hub_common import grants
from hub_common.bus import FASTSTREAM_LOGGER, connection_of, create_broker, jetstream_of, subscriptions_in_place
from hub_common.consumers import Delivery, subscribe
from hub_common.db import create_engine, database_ok, migrate, session_factory, transaction
from hub_common.entra import TenantDirectory
from hub_common.events import (
    CompaniesDiscovered,
    CompanySnapshot,
    Envelope,
    EventData,
    InvitationAccepted,
    RefreshFailed,
    TenantAccessGranted,
    TenantAccessRevoked,
)
from hub_common.leadership import Duty, LeasedDuties
from hub_common.logging import configure_logging, get_logger
from hub_common.operations import OperationsEndpoint, connected_with_database, consumer_lag, outbox_backlog
from hub_common.outbox import OutboxRelay
from hub_common.streams import REGISTRY_CONSUMER, REGISTRY_SNAPSHOTS_CONSUMER, Topology, declare_topology
from hub_common.tasks import finished_despite_cancellation
from hub_common.tracing import configure_tracing
from hub_registry import webhooks
from hub_registry.handlers import register_command_handlers
from hub_registry.models import AlertWebhookDelivery, registry_outbox
from hub_registry.service import (
    accepted_invitations,
    alerts,
    change_notices,
    clients,
    refresh_outcomes,
    refreshes,
    tenant_grants,
)
from hub_registry.settings import RegistrySettings

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "registry_alembic_version"
# The lease of the registry's singleton duties: the outbox relay and the refresh schedule.
LEASE_ROLE = "registry"
# A webhook due later (a retry) is looked for this often; a new one wakes the sender at once.
WEBHOOK_POLL_SECONDS = 2.0
# Alert webhooks POSTed side by side at most (a firm gets alerts.WEBHOOKS_PER_FIRM of them).
WEBHOOKS_AT_ONCE = 50

logger = get_logger(__name__)


def create_app(settings: RegistrySettings) -> FastStream:
    configure_logging(settings)
    configure_tracing(settings)
    broker = create_broker(settings.nats_url, name=settings.service_name, role="registry", settings=settings)
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    operations = OperationsEndpoint(
        settings,
        readiness=connected_with_database(broker, engine),
        samplers=[
            consumer_lag(
                broker,
                [
                    Topology.from_settings(settings).consumer(REGISTRY_CONSUMER),
                    Topology.from_settings(settings).consumer(REGISTRY_SNAPSHOTS_CONSUMER),
                ],
            ),
            outbox_backlog(sessions, registry_outbox),
        ],
    )
    # The one HTTP client of the process: it asks the configured Entra authority, and POSTs
    # alerts to webhooks whose every address was checked first (hub_registry.webhooks).
    http = httpx.AsyncClient(verify=settings.tls_verification(), timeout=settings.entra_discovery_timeout_seconds)
    # Set when an episode starts, so a webhook leaves at once rather than at the next poll.
    webhooks_waiting = asyncio.Event()
    directory = TenantDirectory(
        authority_base=settings.entra_authority,
        http=http,
        timeout_seconds=settings.entra_discovery_timeout_seconds,
        lookups_per_firm_per_hour=settings.tenant_lookups_per_firm_per_hour,
    )
    duties = LeasedDuties(LEASE_ROLE, service_name=settings.service_name, lease_seconds=settings.leader_lease_seconds)

    app = FastStream(broker, logger=FASTSTREAM_LOGGER)

    @app.on_startup
    async def prepare() -> None:
        await operations.start()
        await asyncio.to_thread(migrate, settings.database_url, MIGRATIONS, VERSION_TABLE)
        await broker.connect()
        await declare_topology(jetstream_of(broker), Topology.from_settings(settings))
        js = jetstream_of(broker)

        async def mirror_grant(envelope: Envelope[Any]) -> None:
            """Fetchers learn of a grant, or its end, before anything that follows it is published."""
            if isinstance(envelope.data, TenantAccessGranted | TenantAccessRevoked):
                await grants.record_access(js, envelope)

        duties.connected(
            OutboxRelay(sessions, registry_outbox, js, nats=connection_of(broker), before_publish=mirror_grant)
        )

    async def refresh_on_schedule() -> None:
        # Each client is due when a slot of its own (its phase plus a multiple of its
        # schedule's interval) has passed since its last scheduled refresh as recorded,
        # whichever replica ran it; a late tick does not move later slots.
        operator_schedule = settings.operator_schedule()
        while True:
            try:
                async with transaction(sessions) as session:
                    count = await refreshes.refresh_due_clients(
                        session=session,
                        operator_default=operator_schedule,
                        upkeep=settings.upkeep_interval(),
                        now=datetime.now(UTC),
                        correlation_id=str(uuid.uuid4()),
                        tick=timedelta(seconds=settings.schedule_check_seconds),
                    )
                if count:
                    duties.notify_relay()
                    logger.info("scheduled refresh requested", clients=count)
            except Exception:
                logger.exception("scheduled refresh failed; trying again shortly")
            await asyncio.sleep(settings.schedule_check_seconds)

    async def check_alerts() -> None:
        # Rules on time: a failure that has now lasted long enough, and daily digests.
        while True:
            try:
                now = datetime.now(UTC)
                async with transaction(sessions) as session:
                    started = await alerts.check_failures(session=session, now=now, correlation_id=str(uuid.uuid4()))
                    digests = await alerts.send_due_digests(session=session, now=now, correlation_id=str(uuid.uuid4()))
                if started or digests:
                    duties.notify_relay()
                    webhooks_waiting.set()
                    logger.info("alerts checked", episodes=started, digests=digests)
            except Exception:
                logger.exception("checking alerts failed; trying again shortly")
            await asyncio.sleep(settings.alert_check_seconds)

    async def deliver_one(delivery: AlertWebhookDelivery, secret: str | None) -> None:
        attempt = (
            await webhooks.post(
                http,
                delivery.url,
                body=delivery.body.encode(),
                secret=secret,
                event_id=str(delivery.id),
                event_type="AlertRaised",
                timestamp=int(datetime.now(UTC).timestamp()),
                allow_loopback=settings.alert_webhook_allow_loopback,
                timeout_seconds=settings.alert_webhook_timeout_seconds,
                firm=str(delivery.firm_id),
            )
            if secret is not None
            else webhooks.Attempt(
                webhooks.Outcome.PERMANENT,
                "the rule's webhook secret is gone or does not open with this HUB_SECRET_KEY",
            )
        )

        async def record() -> None:
            async with transaction(sessions) as session:
                await alerts.record_attempt(
                    session=session, delivery_id=delivery.id, attempt=attempt, now=datetime.now(UTC), settings=settings
                )

        # Stopping cancels the attempts out: one that has its answer records it first.
        await finished_despite_cancellation(record())
        logger.info(
            "alert webhook attempted",
            delivery_id=str(delivery.id),
            outcome=attempt.outcome.value,
            detail=attempt.detail,
        )

    async def deliver_webhooks() -> None:
        # At least once, with back-off: each delivery row is claimed, POSTed and recorded.
        # Up to WEBHOOKS_AT_ONCE attempts run side by side, and a place is claimed again as
        # soon as an attempt ends; the claims take turns across firms and cap each firm and
        # destination (alerts.claim_due_deliveries), so a firm whose receivers never answer
        # (each attempt ends within twice the webhook timeout) holds a few places, not all.
        hold = timedelta(seconds=settings.alert_webhook_timeout_seconds * 3)
        sending: dict[asyncio.Task[None], AlertWebhookDelivery] = {}

        async def claim(places: int) -> tuple[list[AlertWebhookDelivery], dict[uuid.UUID, str | None]]:
            async with transaction(sessions) as session:
                due = await alerts.claim_due_deliveries(
                    session=session, now=datetime.now(UTC), hold=hold, limit=places, sending=sending.values()
                )
                return due, {d.id: await alerts.secret_of(session, d, settings) for d in due}

        try:
            while True:
                # Cleared before looking, so a webhook added while the claim runs wakes the next look.
                webhooks_waiting.clear()
                if len(sending) < WEBHOOKS_AT_ONCE:
                    try:
                        due, secrets = await finished_despite_cancellation(claim(WEBHOOKS_AT_ONCE - len(sending)))
                        for delivery in due:
                            sending[asyncio.create_task(deliver_one(delivery, secrets[delivery.id]))] = delivery
                    except Exception:
                        logger.exception("claiming alert webhooks failed; trying again shortly")
                woken = asyncio.create_task(webhooks_waiting.wait())
                try:
                    # An attempt ending frees a place; a new webhook or the poll finds more due.
                    await asyncio.wait(
                        {*sending, woken}, timeout=WEBHOOK_POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    woken.cancel()
                for attempt in [task for task in sending if task.done()]:
                    delivery = sending.pop(attempt)
                    if attempt.exception() is not None:
                        # Its claim runs out and a later look tries it again.
                        logger.error(
                            "recording an alert webhook attempt failed",
                            delivery_id=str(delivery.id),
                            error=repr(attempt.exception())[:300],
                        )
        finally:
            # The lease is lost or the registry stops: what is out is claimed for a while
            # yet, then the next holder sends it again (same Idempotency-Key).
            for attempt in sending:
                attempt.cancel()
            await asyncio.gather(*sending, return_exceptions=True)

    async def refresh_notified_companies() -> None:
        # Companies whose change notices waited out their coalescing window.
        coalesce = timedelta(seconds=settings.notification_coalesce_seconds)
        while True:
            try:
                async with transaction(sessions) as session:
                    count = await change_notices.refresh_waiting_companies(
                        session=session, coalesce=coalesce, now=datetime.now(UTC), correlation_id=str(uuid.uuid4())
                    )
                if count:
                    duties.notify_relay()
                    logger.info("notified companies refreshed", companies=count)
            except Exception:
                logger.exception("refreshing notified companies failed; trying again shortly")
            await asyncio.sleep(settings.notification_check_seconds)

    async def resolve_old_cards() -> None:
        try:
            async with transaction(sessions) as session:
                resolved = await clients.resolve_missing_tenant_ids(session=session, directory=directory)
        except Exception:
            logger.exception("resolving old cards' tenants failed; trying again at the next start")
            return
        if resolved:
            duties.notify_relay()
            logger.info("old cards' tenants resolved", clients=resolved)

    @app.after_startup
    async def start_duties() -> None:
        # Besides the relay, exactly one registry replica resolves old cards and runs the schedule.
        others: dict[str, Duty] = {
            "resolve-old-cards": resolve_old_cards,
            "scheduled-refresh": refresh_on_schedule,
            "alert-checks": check_alerts,
            "alert-webhooks": deliver_webhooks,
            "notified-refresh": refresh_notified_companies,
        }
        duties.start(jetstream_of(broker), others)
        await subscriptions_in_place(broker)
        logger.info("registry ready")

    @app.on_shutdown
    async def stop_duties() -> None:
        await duties.stop()
        await http.aclose()
        await engine.dispose()
        await operations.stop()

    register_command_handlers(broker, sessions, duties.notify_relay, settings, directory)

    async def on_event(envelope: Envelope[EventData], delivery: Delivery) -> None:
        data = envelope.data
        async with transaction(sessions) as session:
            if isinstance(data, InvitationAccepted):
                await accepted_invitations.accept_invitation(
                    session=session,
                    accepted=envelope,  # type: ignore[arg-type]
                    settings=settings,
                    directory=directory,
                )
            elif isinstance(data, CompaniesDiscovered):
                await tenant_grants.confirm_grant(session=session, discovered=envelope)  # type: ignore[arg-type]
                await alerts.on_companies_discovered(session=session, discovered=envelope)  # type: ignore[arg-type]
                await refresh_outcomes.outcome_arrived(session=session, outcome=data)
            elif isinstance(data, RefreshFailed):
                await tenant_grants.withdraw_after_consent_lost(session=session, failed=envelope)  # type: ignore[arg-type]
                await alerts.on_refresh_failed(session=session, failed=envelope)  # type: ignore[arg-type]
                await refresh_outcomes.outcome_arrived(session=session, outcome=data)
        duties.notify_relay()

    async def on_snapshot(envelope: Envelope[EventData], delivery: Delivery) -> None:
        if not isinstance(envelope.data, CompanySnapshot):
            return
        async with transaction(sessions) as session:
            changed = await alerts.on_snapshot(session=session, snapshot=envelope)  # type: ignore[arg-type]
            await refresh_outcomes.outcome_arrived(session=session, outcome=envelope.data)
        if changed:
            duties.notify_relay()
            webhooks_waiting.set()

    subscribe(
        broker,
        Topology.from_settings(settings).consumer(REGISTRY_CONSUMER),
        on_event,
        concurrency=1,
        title="registry: accepted invitations",
        available=partial(database_ok, engine),
    )
    subscribe(
        broker,
        Topology.from_settings(settings).consumer(REGISTRY_SNAPSHOTS_CONSUMER),
        on_snapshot,
        concurrency=1,
        title="registry: alert rules on snapshots",
        available=partial(database_ok, engine),
    )
    return app


async def run(settings: RegistrySettings | None = None) -> None:
    await create_app(settings or RegistrySettings()).run()
