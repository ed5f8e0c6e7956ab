"""Wiring of a fetcher process: one HTTP client, one token provider, one limiter."""

from __future__ import annotations

import uuid

import httpx
from faststream import FastStream
from faststream.nats import NatsMessage

from hub_common import commands, grants
from hub_common.bus import create_broker, jetstream_of
from hub_common.consumers import Delivery, subscribe
from hub_common.events import ClientConnection, Envelope, EventData
from hub_common.logging import configure_logging, get_logger
from hub_common.streams import BC_SLOTS_BUCKET, FETCHER_CONSUMER, Topology, declare_topology
from hub_fetcher.bc.client import BusinessCentral
from hub_fetcher.bc.identity import TokenProvider
from hub_fetcher.bc.limits import SharedTenantSlots, TenantLimiter
from hub_fetcher.handlers import FetcherHandlers
from hub_fetcher.refresh import ClientReader
from hub_fetcher.settings import FetcherSettings
from hub_fetcher.statements import STATEMENT_READS_AT_ONCE, STATEMENTS_QUEUE, StatementsReader, answer_read_statements

logger = get_logger(__name__)


def create_app(settings: FetcherSettings) -> FastStream:
    configure_logging(settings)
    broker = create_broker(settings.nats_url, name=settings.service_name)
    topology = Topology.from_settings(settings)
    consumer = topology.consumer(FETCHER_CONSUMER)
    http = httpx.AsyncClient(
        verify=settings.tls_verification(),
        timeout=httpx.Timeout(settings.http_read_timeout_seconds, connect=settings.http_connect_timeout_seconds),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        follow_redirects=False,
    )
    tokens = TokenProvider(
        authority_base=settings.entra_authority,
        client_id=settings.entra_client_id,
        client_secret=settings.entra_credential(),
        verify=settings.tls_verification(),
        timeout_seconds=settings.http_read_timeout_seconds,
    )
    handlers: list[FetcherHandlers] = []
    statements: list[StatementsReader] = []

    async def handle(envelope: Envelope[EventData], delivery: Delivery) -> None:
        await handlers[0].handle(envelope, delivery)

    app = FastStream(broker)

    @app.on_startup
    async def prepare() -> None:
        await broker.connect()
        js = jetstream_of(broker)
        await declare_topology(js, topology)
        limiter = TenantLimiter(
            concurrent=settings.tenant_max_concurrent_requests,
            per_window=settings.tenant_requests_per_window,
            window_seconds=settings.tenant_window_seconds,
            share=settings.tenant_limit_share,
            shared_slots=SharedTenantSlots(
                await js.key_value(BC_SLOTS_BUCKET),
                slots=settings.tenant_max_concurrent_requests,
                lease_seconds=settings.bc_slot_lease_seconds,
            ),
        )
        bc = BusinessCentral(
            api_base=settings.bc_api,
            http=http,
            tokens=tokens,
            limiter=limiter,
            max_response_bytes=settings.max_response_bytes,
        )
        reader = ClientReader(bc, web_client_base=settings.bc_web_client, use_cue_services=settings.use_cue_services)
        handlers.append(FetcherHandlers(reader, js, consumer))
        statements.append(StatementsReader(bc))

    @app.after_startup
    async def ready() -> None:
        logger.info("fetcher ready", concurrency=settings.concurrency)

    @app.on_shutdown
    async def close() -> None:
        await http.aclose()
        tokens.close()

    subscribe(broker, consumer, handle, concurrency=settings.concurrency, title="fetcher refreshes")

    async def firm_may_read(firm_id: uuid.UUID, connection: ClientConnection) -> bool:
        return await grants.has_access(jetstream_of(broker), firm_id, connection.tenant_id)

    @broker.subscriber(
        commands.READ_STATEMENTS,
        queue=STATEMENTS_QUEUE,
        max_workers=STATEMENT_READS_AT_ONCE,
        title="fetcher: read statements",
    )
    async def read_statements(message: NatsMessage) -> bytes:
        return await answer_read_statements(
            statements[0], message.body, max_payload=broker.connection.max_payload, may_read=firm_may_read
        )

    return app


async def run(settings: FetcherSettings | None = None) -> None:
    await create_app(settings or FetcherSettings()).run()
