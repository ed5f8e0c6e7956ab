"""Connecting to NATS and the one publish helper.

``publish_event`` always sets ``Nats-Msg-Id`` to the event id, so a retry after a lost
acknowledgement (or a relay restarting) is dropped by JetStream's duplicate window rather
than stored twice. The correlation and causation ids travel in headers too, so any
consumer can log them before it even decodes the body, and so does the trace context
(``traceparent``) when tracing is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck

if TYPE_CHECKING:
    from faststream.nats import NatsBroker
    from faststream.nats.security import NatsSecurity

from hub_common.events import Envelope
from hub_common.logging import get_logger
from hub_common.settings import HubSettings, InsecureSettings
from hub_common.tracing import inject_context

logger = get_logger(__name__)
# FastStream's lines, through the root handler ``configure_logging`` installs.
FASTSTREAM_LOGGER = logging.getLogger("faststream")

MSG_ID_HEADER = "Nats-Msg-Id"
CORRELATION_HEADER = "Hub-Correlation-Id"
CAUSATION_HEADER = "Hub-Causation-Id"
EVENT_TYPE_HEADER = "Hub-Event-Type"
FIRM_HEADER = "Hub-Firm-Id"


def redacted_servers(url: str) -> str:
    """HUB_NATS_URL fit for a log line: a ``user:password@`` or ``token@`` becomes ``***@``."""
    servers = []
    for server in url.split(","):
        parts = urlsplit(server.strip())
        if parts.hostname is not None and "@" in parts.netloc:
            host = parts.netloc.rsplit("@", 1)[1]
            server = urlunsplit(parts._replace(netloc=f"***@{host}"))
        servers.append(server.strip())
    return ",".join(servers)


def nats_security(settings: HubSettings) -> NatsSecurity | None:
    """How the process signs in to NATS and checks the server, from the HUB_NATS_* files.

    Raises InsecureSettings, naming the setting, for a file that is missing or unreadable.
    A .creds file is handed to nats-py by its path, which reads it at every (re)connection,
    so a renewed user JWT is used without a restart. A seed file is read here: nats-py
    would take its final newline as part of the seed.
    """
    from faststream.nats.security import NatsCredentials, NatsNKey, NatsSecurity, NatsUserPassword

    settings.require_nats_access()
    tls = settings.nats_tls()
    if settings.nats_credentials_file is not None:
        return NatsCredentials.from_file(settings.nats_credentials_file, ssl_context=tls)
    if settings.nats_nkey_seed_file is not None:
        return NatsNKey.from_seed(settings.nats_nkey_seed(), ssl_context=tls)
    if settings.nats_user:
        return NatsUserPassword(settings.nats_user, settings.nats_password(), ssl_context=tls)
    if tls is not None:
        return NatsSecurity(ssl_context=tls)
    return None


# How long closing a connection waits for its subscriptions to drain. A message a pull
# delivered after its fetch gave up sits in the subscription's queue, which only a fetch
# empties, so the drain waits for nothing until this timeout (nats-py's 30 s): a stopping
# service outlived its SIGTERM grace and was killed. Its unacknowledged messages are
# redelivered after their ack wait whatever this is.
DRAIN_TIMEOUT_SECONDS = 5


def inbox_prefix(name: str) -> str:
    """Where a process's replies, pulled messages and push deliveries arrive: its own
    prefix, so that NATS permissions can let each service read its own replies only
    (hub_common.nats_permissions)."""
    return f"_INBOX.{name}"


class Reconnections:
    """Who must hear that the connection came back: what core NATS (not JetStream) sent
    while it was away is lost, so they make up for it themselves."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[], None]] = []

    def listen(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def reconnected(self) -> None:
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                logger.exception("a reconnection listener failed")


def connection_options(
    url: str,
    *,
    name: str,
    connect_timeout: float = 5.0,
    reconnect_wait_seconds: float = 1.0,
    reconnections: Reconnections | None = None,
) -> dict[str, Any]:
    """nats-py options every process uses: never give up reconnecting."""
    # Credentials in the URL must not reach the logs (a sign-in belongs in the HUB_NATS_*
    # files, but an operator may still have put one there).
    server = redacted_servers(url)

    async def on_disconnected() -> None:
        logger.warning("nats disconnected", server=server)

    async def on_reconnected() -> None:
        logger.info("nats reconnected", server=server)
        if reconnections is not None:
            reconnections.reconnected()

    async def on_error(error: Exception) -> None:
        logger.warning("nats error", error=str(error))

    return {
        "servers": [server.strip() for server in url.split(",")],
        "name": name,
        "connect_timeout": connect_timeout,
        "allow_reconnect": True,
        # -1: a service outlives any broker restart instead of exiting after N tries.
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": reconnect_wait_seconds,
        "drain_timeout": DRAIN_TIMEOUT_SECONDS,
        "inbox_prefix": inbox_prefix(name),
        "disconnected_cb": on_disconnected,
        "reconnected_cb": on_reconnected,
        "error_cb": on_error,
    }


class NatsSignInRefused(InsecureSettings):
    """NATS refused the process's sign-in (a tool run without the operator's, say)."""


async def connect(url: str, *, name: str, connect_timeout: float = 5.0, settings: HubSettings | None = None) -> Client:
    """A plain nats-py connection (the CLI's tools), signed in as ``settings`` say.

    Without ``settings``: those of this process's HUB_* environment, where every process's
    settings come from. A sign-in NATS refuses raises NatsSignInRefused at once: nats-py
    would try again forever, and a tool would wait without a word.
    """
    from faststream.nats.security import parse_security

    security = nats_security(settings if settings is not None else HubSettings())
    options = connection_options(url, name=name, connect_timeout=connect_timeout)
    refused: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
    report = options["error_cb"]

    async def on_error(error: Exception) -> None:
        if "authorization violation" in str(error).lower() and not refused.done():
            refused.set_result(error)
        await report(error)

    options["error_cb"] = on_error
    connecting = asyncio.ensure_future(nats.connect(**options, **parse_security(security)))
    either: set[asyncio.Future[Any]] = {connecting, refused}
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    if connecting.done():
        return connecting.result()
    connecting.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await connecting
    raise NatsSignInRefused(
        f"NATS at {redacted_servers(url)} refused the sign-in ({refused.result()}): the hub tools sign in as"
        " the operator, HUB_NATS_USER=operator and HUB_NATS_PASSWORD_FILE (deploy/README.md, NATS sign-in)"
    )


def event_headers(envelope: Envelope[Any]) -> dict[str, str]:
    headers = {
        MSG_ID_HEADER: str(envelope.id),
        CORRELATION_HEADER: envelope.correlation_id,
        EVENT_TYPE_HEADER: envelope.type,
        FIRM_HEADER: str(envelope.firm_id),
    }
    if envelope.causation_id:
        headers[CAUSATION_HEADER] = envelope.causation_id
    return headers


# The broker did not answer: it restarts, or a cluster elects a stream's new leader. Not the
# message's fault: asking again a moment later works.
BROKER_UNAVAILABLE: tuple[type[Exception], ...] = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
)


class PublishFailed(RuntimeError):
    """JetStream did not confirm an event within the retry budget; the caller keeps it."""


async def publish_event(
    js: JetStreamContext,
    envelope: Envelope[Any],
    *,
    attempts: int = 8,
    timeout: float = 5.0,
) -> PubAck:
    """Publish an event to its stream and wait for JetStream's acknowledgement.

    Retries reuse the same ``Nats-Msg-Id``, so a publish whose acknowledgement was lost
    is never stored twice.
    """
    payload = envelope.to_bytes()
    headers = event_headers(envelope)
    inject_context(headers)
    delay = 0.2
    for attempt in range(1, attempts + 1):
        try:
            ack = await js.publish(envelope.subject, payload, timeout=timeout, headers=headers)
        except BROKER_UNAVAILABLE as error:
            # Waits add up to about 16 s over 8 attempts: longer than a cluster's election.
            if attempt == attempts:
                raise PublishFailed(f"{envelope.type} {envelope.id} not confirmed") from error
            logger.warning("publish retry", event_type=envelope.type, attempt=attempt, error=repr(error))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        return ack
    raise PublishFailed(f"{envelope.type} {envelope.id} not confirmed")  # pragma: no cover


def create_broker(
    url: str,
    *,
    name: str,
    role: str | None = None,
    connect_timeout: float = 5.0,
    settings: HubSettings | None = None,
    reconnections: Reconnections | None = None,
) -> NatsBroker:
    """The FastStream broker a service runs its subscribers on, with the same options.

    ``role`` is the service (registry, fetcher...) whose NATS user's inboxes its replies
    arrive on; ``name`` (HUB_SERVICE_NAME, which an operator may change) only names the
    connection. Without a role, the name is both.

    It signs in as ``settings`` say or, without them, as this process's HUB_* environment
    says (where the service's own settings come from). ``reconnections`` hears each time the
    connection comes back.

    Its telemetry middleware continues the trace a command's headers carry (a no-op while
    tracing is off), with span names and metric labels that carry no firm or other id. Its
    log lines go through the service's structlog set-up (JSON in production; FastStream's
    own handler would print coloured text beside it), and the line it writes for every
    message received and processed only at DEBUG: a registry reading every snapshot would
    otherwise write two lines per company refreshed.
    """
    from faststream.nats import NatsBroker
    from faststream.opentelemetry.middleware import TelemetryMiddleware

    from hub_common.telemetry_names import telemetry_settings_for

    # Importing FastStream gave its logger a handler of its own that does not propagate.
    FASTSTREAM_LOGGER.handlers.clear()
    FASTSTREAM_LOGGER.propagate = True
    FASTSTREAM_LOGGER.setLevel(logging.NOTSET)
    security = nats_security(settings if settings is not None else HubSettings())
    options = connection_options(url, name=name, connect_timeout=connect_timeout, reconnections=reconnections)
    options["inbox_prefix"] = inbox_prefix(role or name)
    servers = options.pop("servers")
    return NatsBroker(
        servers,
        security=security,
        middlewares=[TelemetryMiddleware(settings_provider_factory=telemetry_settings_for)],
        logger=FASTSTREAM_LOGGER,
        log_level=logging.DEBUG,
        **options,
    )


def connection_of(broker: NatsBroker) -> Client:
    connection: Client | None = broker.config.connection_state.connection
    if connection is None:
        raise RuntimeError("the broker is not connected")
    return connection


async def subscriptions_in_place(broker: NatsBroker) -> None:
    """Wait until the server has taken this process's subscriptions (a PING answered after
    them). The client sends them in the background: a service that said it was ready before
    could meet another process's command with no responder yet ("no responders")."""
    await connection_of(broker).flush()


def jetstream_of(broker: NatsBroker) -> JetStreamContext:
    stream: JetStreamContext | None = broker.config.connection_state.stream
    if stream is None:
        raise RuntimeError("the broker is not connected")
    return stream
