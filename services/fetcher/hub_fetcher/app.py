"""Wiring of a fetcher process: one HTTP client, one token provider, one limiter, one pull loop."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import httpx
from faststream import FastStream
from faststream.nats import NatsMessage

from hub_common import commands, grants, metrics
from hub_common.bus import FASTSTREAM_LOGGER, create_broker, jetstream_of, subscriptions_in_place
from hub_common.change_notifications import NotificationSigner
from hub_common.events import ClientConnection
from hub_common.logging import configure_logging, get_logger
from hub_common.nats_permissions import durables_of
from hub_common.operations import OperationsEndpoint, StartUp, consumer_lag, nats_connected
from hub_common.purpose_keys import Purpose, key_id
from hub_common.streams import (
    BC_HOLD_OFFS_BUCKET,
    BC_SLOTS_BUCKET,
    BC_WINDOWS_BUCKET,
    FETCHER_CONSUMER,
    NOTIFICATION_STATES_BUCKET,
    Topology,
    await_topology,
)
from hub_common.tracing import configure_tracing
from hub_fetcher.bc.client import BusinessCentral
from hub_fetcher.bc.identity import TokenProvider
from hub_fetcher.bc.limits import SharedRequestWindow, SharedTenantSlots, TenantLimiter
from hub_fetcher.bc.transport import TenantPooledTransport
from hub_fetcher.handlers import FetcherHandlers
from hub_fetcher.in_flight import InFlightConsumer
from hub_fetcher.notifications.subscriptions import NotificationSubscriptions
from hub_fetcher.refresh import ClientReader
from hub_fetcher.settings import FetcherSettings
from hub_fetcher.statements import STATEMENT_READS_AT_ONCE, STATEMENTS_QUEUE, StatementsReader, answer_read_statements

logger = get_logger(__name__)

# On shutdown, refreshes in hand get this long to finish; the rest go back to the stream at
# once (a nack), for another fetcher, instead of after the ack wait.
SHUTDOWN_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class Connected:
    """What a fetcher process has only once connected: both need the JetStream context."""

    refreshes: InFlightConsumer
    statements: StatementsReader


def create_app(settings: FetcherSettings) -> FastStream:
    configure_logging(settings)
    configure_tracing(settings)
    if settings.notification_url:
        # It signs each company's notification address with the key the gateway checks.
        settings.require_key_for(Purpose.NOTIFICATIONS)
    metrics.show_fetcher_series()
    broker = create_broker(settings.nats_url, name=settings.service_name, role="fetcher", settings=settings)
    topology = Topology.from_settings(settings)
    consumer = topology.consumer(FETCHER_CONSUMER)
    start_up = StartUp()
    operations = OperationsEndpoint(
        settings,
        readiness={"nats": nats_connected(broker), "started": start_up.check},
        samplers=[consumer_lag(broker, [consumer])],
    )
    # Everything this process reads at once: refreshes in flight and statement reads.
    readers_at_once = settings.concurrency + STATEMENT_READS_AT_ONCE
    http = httpx.AsyncClient(
        timeout=httpx.Timeout(settings.http_read_timeout_seconds, connect=settings.http_connect_timeout_seconds),
        transport=TenantPooledTransport(
            verify=settings.tls_verification(),
            # Room for every request the slots allow (each reader's tenant requests, plus
            # one token request), so a request never waits for a connection inside its
            # deadline.
            max_connections=readers_at_once * (settings.tenant_max_concurrent_requests + 1),
            max_keepalive_connections=200,
        ),
        follow_redirects=False,
    )
    tokens = TokenProvider(
        authority_base=settings.entra_authority,
        client_id=settings.entra_client_id,
        client_secret=settings.entra_credential(),
        http=http,
        deadline_seconds=settings.entra_request_deadline_seconds,
        threads=readers_at_once,
    )
    connected: Connected | None = None

    app = FastStream(broker, logger=FASTSTREAM_LOGGER)

    @app.on_startup
    async def prepare() -> None:
        nonlocal connected
        await operations.start()
        await broker.connect()
        js = jetstream_of(broker)
        await await_topology(js, topology, consumers=durables_of("fetcher"))
        limiter = TenantLimiter(
            concurrent=settings.tenant_max_concurrent_requests,
            per_window=settings.tenant_requests_per_window,
            window_seconds=settings.tenant_window_seconds,
            shared_slots=SharedTenantSlots(
                await js.key_value(BC_SLOTS_BUCKET),
                await js.key_value(BC_HOLD_OFFS_BUCKET),
                slots=settings.tenant_max_concurrent_requests,
                lease_seconds=settings.bc_slot_lease_seconds,
            ),
            shared_window=SharedRequestWindow(
                await js.key_value(BC_WINDOWS_BUCKET),
                per_window=settings.tenant_requests_per_window,
                window_seconds=settings.tenant_window_seconds,
            ),
        )
        bc = BusinessCentral(
            api_base=settings.bc_api,
            http=http,
            tokens=tokens,
            limiter=limiter,
            max_response_bytes=settings.max_response_bytes,
            request_deadline_seconds=settings.bc_request_deadline_seconds,
        )
        reader = ClientReader(bc, web_client_base=settings.bc_web_client, use_cue_services=settings.use_cue_services)
        notifications = (
            NotificationSubscriptions(
                bc,
                base_url=settings.notification_url,
                signer=NotificationSigner(settings.key_for(Purpose.NOTIFICATIONS)),
                per_environment=settings.notification_subscriptions_per_environment,
                renew_before=timedelta(seconds=settings.notification_renew_before_seconds),
                recorded_states=await js.key_value(NOTIFICATION_STATES_BUCKET),
            )
            if settings.notification_url
            else None
        )
        handlers = FetcherHandlers(
            reader,
            js,
            consumer,
            refresh_deadline_seconds=settings.refresh_deadline_seconds,
            notifications=notifications,
        )
        connected = Connected(
            refreshes=InFlightConsumer(js, consumer, handlers.handle, limit=settings.concurrency),
            statements=StatementsReader(bc, deadline_seconds=settings.statements_deadline_seconds),
        )

    @app.after_startup
    async def ready() -> None:
        assert connected is not None, "after_startup runs once on_startup connected"
        await connected.refreshes.start()
        await subscriptions_in_place(broker)
        start_up.over = True
        logger.info(
            "fetcher ready",
            concurrency=settings.concurrency,
            # The gateway says the same id at its start when both hold the same key.
            notification_key_id=key_id(settings.key_for(Purpose.NOTIFICATIONS)),
        )

    @app.on_shutdown
    async def close() -> None:
        if connected is not None:
            await connected.refreshes.stop(grace_seconds=SHUTDOWN_GRACE_SECONDS)
        await http.aclose()
        tokens.close()
        await operations.stop()

    async def firm_may_read(firm_id: uuid.UUID, connection: ClientConnection) -> bool:
        return await grants.has_access(jetstream_of(broker), firm_id, connection.tenant_id)

    @broker.subscriber(
        commands.READ_STATEMENTS,
        queue=STATEMENTS_QUEUE,
        max_workers=STATEMENT_READS_AT_ONCE,
        title="fetcher: read statements",
    )
    async def read_statements(message: NatsMessage) -> bytes:
        assert connected is not None, "subscribers start once on_startup connected"
        return await answer_read_statements(
            connected.statements, message.body, max_payload=broker.connection.max_payload, may_read=firm_may_read
        )

    return app


async def run(settings: FetcherSettings | None = None) -> None:
    await create_app(settings or FetcherSettings()).run()
