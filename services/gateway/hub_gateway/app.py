"""Wiring of the gateway: FastAPI, the projection subscribers and the lifespan."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import FrameType

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub_common import metrics
from hub_common.bus import Reconnections, create_broker, jetstream_of, subscriptions_in_place
from hub_common.change_notifications import NOTIFICATION_PATH
from hub_common.consumers import Delivery, subscribe_batches
from hub_common.db import create_engine, database_ok, migrate, session_factory, transaction
from hub_common.entra import EntraTokenVerifier
from hub_common.events import Envelope, EventData
from hub_common.i18n import N_
from hub_common.logging import bound_context, configure_logging, get_logger
from hub_common.nats_permissions import durables_of
from hub_common.operations import OperationsEndpoint, StartUp, connected_with_database, consumer_lag
from hub_common.purpose_keys import Purpose, key_id
from hub_common.settings import TracingExporter
from hub_common.streams import (
    GATEWAY_EVENTS_CONSUMER,
    GATEWAY_SNAPSHOTS_CONSUMER,
    StoppedWaitingForTopology,
    Topology,
    await_topology,
)
from hub_common.tracing import configure_tracing
from hub_gateway import request_tracing
from hub_gateway.accounts.endpoints import accounts_api
from hub_gateway.alerts.endpoints import alerts_api
from hub_gateway.body_limit import BodySizeLimit
from hub_gateway.change_notifications.endpoints import MAX_NOTICES_BODY_BYTES, business_central_notifications
from hub_gateway.check_errors.dead_letters import dead_letters
from hub_gateway.check_errors.endpoints import check_errors_api
from hub_gateway.client_url_tests.answers import ConnectionTestAnswers
from hub_gateway.client_url_tests.endpoints import client_url_tests_api
from hub_gateway.clients.client_access import client_access_pages
from hub_gateway.clients.connect import connect_pages
from hub_gateway.clients.endpoints import clients_api
from hub_gateway.company_details.endpoints import company_details_api
from hub_gateway.dashboard import queries as dashboard_queries
from hub_gateway.dashboard.endpoints import dashboard_api
from hub_gateway.dashboard.live import LiveUpdates
from hub_gateway.dependencies import GatewayState, sign_in_refusal
from hub_gateway.health import health
from hub_gateway.invitations.endpoints import client_invitations
from hub_gateway.invitations.pages import invitation_pages
from hub_gateway.languages import localized_http_exception_handler, localized_validation_exception_handler
from hub_gateway.readmodel.projection import apply_batch
from hub_gateway.refresh.endpoints import refresh_api
from hub_gateway.refresh_schedule.endpoints import refresh_schedule_api
from hub_gateway.reports.endpoints import reports
from hub_gateway.settings import GatewaySettings
from hub_gateway.web.api_docs import SWAGGER_UI_FILES, api_docs_pages
from hub_gateway.web.dev_mail import dev_mail_pages
from hub_gateway.web.messages import script_messages
from hub_gateway.web.pages import pages

MIGRATIONS = Path(__file__).parent / "migrations"
STATIC = Path(__file__).parent / "web" / "static"
VERSION_TABLE = "gateway_alembic_version"
# Within the supervisor's and a pod's grace after SIGTERM (15 s and 30 s).
SHUTDOWN_GRACE_SECONDS = 10
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The largest body of a form or the API: a client card with every field at its longest is
# about 35 KB of UTF-8 (its 4,000-character notes included), about 100 KB if each character
# is sent as a JSON escaped surrogate pair; saved views, alert rules and the rest are smaller.
MAX_BODY_BYTES = 128 * 1024
# A client's invitation may name 300 companies of 250 characters: under 1 MiB however written.
MAX_INVITATION_BODY_BYTES = 1024 * 1024

logger = get_logger(__name__)


# What a page of the hub may load and run: its own scripts, styles and images only (inline
# style attributes allowed; no inline script, so injected markup cannot run), never inside
# another site's frame. A defence in depth: every value shown is escaped or set as text.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "frame-ancestors 'none'",
    )
)


def create_app(settings: GatewaySettings) -> FastAPI:
    settings.require_secret_key()
    # Here, not when the lifespan connects: uvicorn would report it as a failed startup.
    settings.require_nats_access()
    configure_logging(settings)
    configure_tracing(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Each resource's closing is registered as soon as it is open, so a start that fails
        # or is stopped half-way closes what it opened, and a stop closes all in reverse order.
        async with AsyncExitStack() as closing:
            engine = create_engine(settings.database_url)
            closing.push_async_callback(engine.dispose)
            sessions = session_factory(engine)
            reconnections = Reconnections()
            broker = create_broker(
                settings.nats_url,
                name=settings.service_name,
                role="gateway",
                settings=settings,
                reconnections=reconnections,
            )
            topology = Topology.from_settings(settings)

            async def sample_figures_age() -> None:
                async with sessions() as session:
                    ages = await dashboard_queries.figures_ages(session, datetime.now(UTC))
                metrics.company_figures_age.record(metrics.FiguresAge.of(ages))

            # On a port of its own: the public port never shows metrics.
            start_up = StartUp()
            operations = OperationsEndpoint(
                settings,
                readiness=connected_with_database(broker, engine) | {"started": start_up.check},
                samplers=[
                    consumer_lag(
                        broker,
                        [topology.consumer(GATEWAY_EVENTS_CONSUMER), topology.consumer(GATEWAY_SNAPSHOTS_CONSUMER)],
                    ),
                    sample_figures_age,
                ],
            )
            await operations.start()
            closing.push_async_callback(operations.stop)
            await asyncio.to_thread(migrate, settings.database_url, MIGRATIONS, VERSION_TABLE)

            # Made once the topology is there; the projections announce changes from then on.
            live: LiveUpdates | None = None

            # The events and snapshots projections share rows; in one process they take turns
            # (SQLite has no row locks; PostgreSQL's row locks cover several replicas).
            projecting = asyncio.Lock()

            async def project(batch: list[tuple[Envelope[EventData], Delivery]]) -> None:
                async with projecting, transaction(sessions) as session:
                    changes = await apply_batch(session, batch, datetime.now(UTC))
                applied = datetime.now(UTC)
                for envelope, delivery in batch:
                    lag = (applied - envelope.occurred_at).total_seconds()
                    metrics.projection_lag_seconds.labels(stream=delivery.stream).observe(max(0.0, lag))
                if live is not None:  # after the commit: a page told of a change must be able to read it
                    await live.announce(changes)

            # While the database is down the projections nack and pause; nothing is acked unstored.
            for consumer, stream in ((GATEWAY_EVENTS_CONSUMER, "events"), (GATEWAY_SNAPSHOTS_CONSUMER, "snapshots")):
                subscribe_batches(
                    broker,
                    topology.consumer(consumer),
                    project,
                    batch_size=settings.projection_batch_size,
                    title=f"gateway read model: {stream}",
                    available=partial(database_ok, engine),
                )
            await broker.connect()
            closing.push_async_callback(broker.stop)
            try:
                await await_topology(
                    jetstream_of(broker),
                    topology,
                    consumers=durables_of("gateway"),
                    stopping=lambda: bool(getattr(app.state, "stopping", False)),
                )
                stopped_while_waiting = False
            except StoppedWaitingForTopology:
                stopped_while_waiting = True
            if stopped_while_waiting:
                # A stop asked for, not a failed start: raising would make uvicorn log a traceback
                # and exit 3. Yielding lets it shut down at once (it was asked to exit) and end by
                # the SIGTERM it was sent, as after any run.
                logger.info("stopped before the registry declared the topology")
                yield
                return
            live = LiveUpdates(broker.connection)
            await live.start()
            reconnections.listen(live.resync)
            closing.push_async_callback(live.stop)
            connection_tests = ConnectionTestAnswers(broker.connection)
            await connection_tests.start()
            closing.push_async_callback(connection_tests.stop)
            await broker.start()
            entra_http = httpx.Client(verify=settings.tls_verification(), timeout=30)
            closing.callback(entra_http.close)  # msal needs a sync client; closing it is instant
            entra_keys_http = httpx.AsyncClient(verify=settings.tls_verification(), timeout=30)
            closing.push_async_callback(entra_keys_http.aclose)
            app.state.gateway = GatewayState(
                settings=settings,
                engine=engine,
                sessions=sessions,
                broker=broker,
                entra_tokens=EntraTokenVerifier(
                    authority_base=settings.entra_authority, audience=settings.entra_client_id, http=entra_keys_http
                ),
                live=live,
                connection_tests=connection_tests,
                http=entra_keys_http,
                entra_http=entra_http,
            )
            await subscriptions_in_place(broker)
            start_up.over = True
            logger.info(
                "gateway ready",
                url=f"http://{settings.host}:{settings.port}",
                # The fetchers say the same id at their start when they hold the same key.
                notification_key_id=key_id(settings.key_for(Purpose.NOTIFICATIONS)),
            )
            yield

    app = FastAPI(
        title="Accountant Hub",
        version="0.1.0",
        description="One live dashboard of every client company, for accounting firms.",
        lifespan=lifespan,
        # The hub serves its own /docs (web/api_docs.py); FastAPI's load scripts from a CDN.
        docs_url=None,
        redoc_url=None,
    )

    # Added first, so the innermost of the middlewares: its 413 goes out through the others
    # like any answer (correlation id, security headers, metrics). None of them reads a
    # body, so every body is still read through it.
    app.add_middleware(
        BodySizeLimit,
        limit=MAX_BODY_BYTES,
        larger={NOTIFICATION_PATH: MAX_NOTICES_BODY_BYTES, "/api/v1/client-invitations": MAX_INVITATION_BODY_BYTES},
    )

    @app.middleware("http")
    async def correlation(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        incoming = request.headers.get("x-correlation-id", "")
        correlation_id = incoming if 0 < len(incoming) <= 100 and incoming.isprintable() else str(uuid.uuid4())
        request.state.correlation_id = correlation_id
        with bound_context({"correlation_id": correlation_id}):
            try:
                response = await call_next(request)
            except Exception:
                # Answered here, inside the other middlewares, so a crash's answer carries the
                # security headers and the correlation id, and is counted, like any other;
                # Starlette's own would be plain text outside all of them.
                # The route's template, not the path: a Connect link or webhook key is a credential.
                logger.exception("request failed", path=request_tracing.route_of(request.scope), method=request.method)
                response = await localized_http_exception_handler(
                    request,
                    StarletteHTTPException(
                        status.HTTP_500_INTERNAL_SERVER_ERROR,
                        detail=N_(
                            "The hub failed to answer this request. Try again; if it keeps failing, "
                            "give your administrator its correlation id"
                        ),
                    ),
                )
        response.headers["X-Correlation-Id"] = correlation_id
        return response

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        # FastAPI's interactive API pages load their scripts from a CDN; every page of the
        # hub's own runs only its own script files.
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        # A firm's figures, clients and people are kept by no browser cache or proxy (a
        # shared computer's back button, a caching proxy); the scripts and styles are the
        # same for everyone and keep their own caching, as do answers that set their own.
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        # The route's template (never the path itself) and known methods only: whatever a
        # client sends adds no series.
        route = getattr(request.scope.get("route"), "path", "unmatched")
        method = request.method if request.method in HTTP_METHODS else "other"
        metrics.http_request_duration_seconds.labels(
            method=method, route=route, status_class=f"{response.status_code // 100}xx"
        ).observe(time.perf_counter() - started)
        return response

    app.include_router(health)
    # The JSON API, one router per feature of the accountant's (each folder of hub_gateway/).
    app.include_router(dashboard_api)
    app.include_router(company_details_api)
    app.include_router(refresh_api)
    app.include_router(refresh_schedule_api)
    app.include_router(alerts_api)
    app.include_router(clients_api)
    app.include_router(client_url_tests_api)
    app.include_router(check_errors_api)
    app.include_router(accounts_api)
    app.include_router(reports)
    app.include_router(dead_letters)
    app.include_router(pages)
    app.include_router(client_invitations)
    app.include_router(business_central_notifications)
    app.include_router(invitation_pages)
    app.include_router(dev_mail_pages)
    app.include_router(connect_pages)
    app.include_router(client_access_pages)
    app.include_router(script_messages)
    app.include_router(api_docs_pages)
    # Before /static, which would otherwise take its paths.
    app.mount("/static/swagger-ui", StaticFiles(directory=SWAGGER_UI_FILES), name="swagger-ui")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(StarletteHTTPException, localized_http_exception_handler)
    app.add_exception_handler(RequestValidationError, request_refused)
    if settings.tracing_exporter is not TracingExporter.OFF:
        request_tracing.instrument(app)
    return app


async def request_refused(request: Request, error: Exception) -> Response:
    """A 422 for an invalid request, except that a body that is not JSON at all, sent to a
    route behind sign-in by someone not signed in, is answered 401 as any other request of
    theirs: FastAPI parses the body before it asks who is calling."""
    assert isinstance(error, RequestValidationError)
    if any(problem.get("type") == "json_invalid" for problem in error.errors()):
        refusal = await sign_in_refusal(request)
        if refusal is not None:
            return await localized_http_exception_handler(request, refusal)
    return await localized_validation_exception_handler(request, error)


class _GatewayServer(uvicorn.Server):
    """uvicorn, ending the open live streams as it starts to stop: it waits for every open
    response, and a live stream never ends by itself. Each page reconnects, to a replica
    still running."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A start-up still waiting (for the registry's topology) ends on it: uvicorn would
        # stop only once the start-up is over.
        self._app.state.stopping = True
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        gateway: GatewayState | None = getattr(self._app.state, "gateway", None)
        if gateway is not None:
            gateway.live.end_streams()
        await super().shutdown(sockets)


def run(settings: GatewaySettings | None = None) -> None:
    settings = settings or GatewaySettings()
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        proxy_headers=False,
        # What is still running this long after SIGTERM (a slow request) is cancelled.
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )
    # A start that fails exits with uvicorn's STARTUP_FAILURE (3), as uvicorn.run would.
    _GatewayServer(config, app).run()
