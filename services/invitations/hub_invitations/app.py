"""Wiring of the invitations service: broker and topology."""

from __future__ import annotations

from faststream import FastStream

from hub_common.bus import create_broker, jetstream_of
from hub_common.logging import configure_logging, get_logger
from hub_common.streams import declare_topology
from hub_invitations.settings import InvitationsSettings

logger = get_logger(__name__)


def create_app(settings: InvitationsSettings) -> FastStream:
    configure_logging(settings)
    broker = create_broker(settings.nats_url, name=settings.service_name)
    app = FastStream(broker)

    @app.on_startup
    async def prepare() -> None:
        await broker.connect()
        await declare_topology(jetstream_of(broker))

    @app.after_startup
    async def ready() -> None:
        logger.info("invitations ready")

    return app


async def run(settings: InvitationsSettings | None = None) -> None:
    await create_app(settings or InvitationsSettings()).run()
