"""Wiring of the invitations service: broker, command handlers, outbox relay, mail, migrations."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from functools import partial
from pathlib import Path

from faststream import FastStream

from hub_common import grants
from hub_common.bus import FASTSTREAM_LOGGER, connection_of, create_broker, jetstream_of, subscriptions_in_place
from hub_common.consumers import Delivery, subscribe
from hub_common.db import create_engine, database_ok, migrate, session_factory
from hub_common.events import AccountantRemoved, ColleagueInvitationWithdrawn, ColleagueInvited, Envelope, EventData
from hub_common.leadership import LeasedDuties
from hub_common.logging import configure_logging, get_logger
from hub_common.nats_permissions import durables_of
from hub_common.operations import (
    OperationsEndpoint,
    StartUp,
    connected_with_database,
    consumer_lag,
    outbox_backlog,
)
from hub_common.outbox import OutboxRelay
from hub_common.purpose_keys import Purpose
from hub_common.streams import INVITATIONS_CONSUMER, Topology, await_topology
from hub_common.tracing import configure_tracing
from hub_invitations.alert_mail import send_alert_mail
from hub_invitations.colleague_mail import send_colleague_mail
from hub_invitations.event_mail import (
    ALERT_MAIL,
    DROPPED_INVITATION_WITHDRAWN,
    DROPPED_RECIPIENT_REMOVED,
    INVITATION_MAIL,
    drop_unsent_mail,
)
from hub_invitations.handlers import register_command_handlers
from hub_invitations.mailer import InvitationMailer
from hub_invitations.models import invitations_outbox
from hub_invitations.settings import InvitationsSettings

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "invitations_alembic_version"
# The lease of the one replica that relays the outbox.
LEASE_ROLE = "invitations"

logger = get_logger(__name__)


def create_app(settings: InvitationsSettings) -> FastStream:
    settings.require_key_for(Purpose.INVITATION_LINKS)
    configure_logging(settings)
    configure_tracing(settings)
    broker = create_broker(settings.nats_url, name=settings.service_name, role="invitations", settings=settings)
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    start_up = StartUp()
    operations = OperationsEndpoint(
        settings,
        readiness=connected_with_database(broker, engine) | {"started": start_up.check},
        samplers=[
            consumer_lag(broker, [Topology.from_settings(settings).consumer(INVITATIONS_CONSUMER)]),
            outbox_backlog(sessions, invitations_outbox),
        ],
    )
    mailer = InvitationMailer(sessions, settings)
    # Exactly one invitations replica relays the outbox: events leave once, in order.
    duties = LeasedDuties(LEASE_ROLE, service_name=settings.service_name, lease_seconds=settings.leader_lease_seconds)

    app = FastStream(broker, logger=FASTSTREAM_LOGGER)

    @app.on_startup
    async def prepare() -> None:
        await operations.start()
        await asyncio.to_thread(migrate, settings.database_url, MIGRATIONS, VERSION_TABLE)
        await broker.connect()
        await await_topology(
            jetstream_of(broker), Topology.from_settings(settings), consumers=durables_of("invitations")
        )
        duties.connected(OutboxRelay(sessions, invitations_outbox, jetstream_of(broker), nats=connection_of(broker)))

    @app.after_startup
    async def start_background() -> None:
        duties.start(jetstream_of(broker))
        # Every replica retries unsent mail: a conditional claim keeps each mail to one sender.
        mailer.start()
        await subscriptions_in_place(broker)
        start_up.over = True
        logger.info("invitations ready", smtp=f"{settings.smtp_host}:{settings.smtp_port}")

    @app.on_shutdown
    async def stop_background() -> None:
        await mailer.stop()
        await duties.stop()
        await engine.dispose()
        await operations.stop()

    async def access_removed_at(firm_id: uuid.UUID, tenant: str) -> datetime | None:
        # The registry's grants, as it mirrors them for the fetchers.
        return await grants.revoked_at(jetstream_of(broker), firm_id, tenant)

    register_command_handlers(broker, sessions, duties.notify_relay, mailer, settings, access_removed_at)

    async def on_event(envelope: Envelope[EventData], delivery: Delivery) -> None:
        data = envelope.data
        if isinstance(data, ColleagueInvited):
            await send_colleague_mail(envelope, sessions, settings)
        elif isinstance(data, ColleagueInvitationWithdrawn | AccountantRemoved):
            withdrawn = isinstance(data, ColleagueInvitationWithdrawn)
            await drop_unsent_mail(
                sessions,
                firm_id=envelope.firm_id,
                email=data.email,
                kind=INVITATION_MAIL if withdrawn else ALERT_MAIL,
                reason=DROPPED_INVITATION_WITHDRAWN if withdrawn else DROPPED_RECIPIENT_REMOVED,
                before=envelope.occurred_at,
            )
        else:
            await send_alert_mail(envelope, sessions, settings)

    subscribe(
        broker,
        Topology.from_settings(settings).consumer(INVITATIONS_CONSUMER),
        on_event,
        concurrency=4,
        title="invitations: mail to invited colleagues and alert mail, and kept mail that must not go",
        # While the database is away, mail waits for it instead of spending its deliveries
        # (every ColleagueInvited and AlertRaised would be dead-lettered within minutes).
        available=partial(database_ok, engine),
    )
    return app


async def run(settings: InvitationsSettings | None = None) -> None:
    await create_app(settings or InvitationsSettings()).run()
