"""Wiring of the registry: broker, command handlers, outbox relay, migrations."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from faststream import FastStream

from hub_common import grants
from hub_common.bus import connection_of, create_broker, jetstream_of
from hub_common.consumers import Delivery, subscribe
from hub_common.db import create_engine, database_ok, migrate, session_factory, transaction
from hub_common.entra import TenantDirectory
from hub_common.events import (
    CompaniesDiscovered,
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
from hub_common.streams import REGISTRY_CONSUMER, Topology, declare_topology
from hub_common.tracing import configure_tracing
from hub_registry.handlers import register_command_handlers
from hub_registry.models import registry_outbox
from hub_registry.service import accepted_invitations, change_notices, clients, refreshes, tenant_grants
from hub_registry.settings import RegistrySettings

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "registry_alembic_version"
# The lease of the registry's singleton duties: the outbox relay and the refresh schedule.
LEASE_ROLE = "registry"

logger = get_logger(__name__)


def create_app(settings: RegistrySettings) -> FastStream:
    configure_logging(settings)
    configure_tracing(settings)
    broker = create_broker(settings.nats_url, name=settings.service_name)
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    operations = OperationsEndpoint(
        settings,
        readiness=connected_with_database(broker, engine),
        samplers=[
            consumer_lag(broker, [Topology.from_settings(settings).consumer(REGISTRY_CONSUMER)]),
            outbox_backlog(sessions, registry_outbox),
        ],
    )
    # The one HTTP client of the process: it only ever asks the configured Entra authority.
    http = httpx.AsyncClient(verify=settings.tls_verification(), timeout=settings.entra_discovery_timeout_seconds)
    directory = TenantDirectory(
        authority_base=settings.entra_authority,
        http=http,
        timeout_seconds=settings.entra_discovery_timeout_seconds,
    )
    duties = LeasedDuties(LEASE_ROLE, service_name=settings.service_name, lease_seconds=settings.leader_lease_seconds)

    app = FastStream(broker)

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
        # Each client is due its schedule's interval after its last scheduled refresh as
        # recorded, whichever replica ran it.
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
                    )
                if count:
                    duties.notify_relay()
                    logger.info("scheduled refresh requested", clients=count)
            except Exception:
                logger.exception("scheduled refresh failed; trying again shortly")
            await asyncio.sleep(settings.schedule_check_seconds)

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
            "notified-refresh": refresh_notified_companies,
        }
        duties.start(jetstream_of(broker), others)
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
            elif isinstance(data, RefreshFailed):
                await tenant_grants.withdraw_after_consent_lost(session=session, failed=envelope)  # type: ignore[arg-type]
        duties.notify_relay()

    async def database_answers() -> bool:
        return await database_ok(engine)

    subscribe(
        broker,
        Topology.from_settings(settings).consumer(REGISTRY_CONSUMER),
        on_event,
        concurrency=1,
        title="registry: accepted invitations",
        available=database_answers,
    )
    return app


async def run(settings: RegistrySettings | None = None) -> None:
    await create_app(settings or RegistrySettings()).run()
