"""The operations endpoint every service serves on a port of its own (``HUB_OPERATIONS_PORT``).

* ``GET /livez``: 200 while the process's event loop runs (this answer comes from it).
* ``GET /readyz``: 200 while every readiness check passes (connected to NATS, the database
  answers); otherwise 503 with the failing checks, so an orchestrator stops sending work.
* ``GET /metrics``: the Prometheus text exposition of ``hub_common.metrics``.

It is a tiny ASGI app served by uvicorn inside the service's own event loop, on its own
port, so the gateway's public port never shows metrics. Gauges that need a round trip (a
consumer's lag, an outbox's backlog) are sampled in the background every
``HUB_METRICS_SAMPLE_SECONDS``: a scrape never waits on the broker or a database.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import uvicorn
from faststream.nats import NatsBroker
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hub_common import metrics, outbox
from hub_common.bus import jetstream_of
from hub_common.db import database_ok
from hub_common.logging import get_logger
from hub_common.settings import HubSettings
from hub_common.streams import ConsumerSpec
from hub_common.tasks import cancel_and_wait

logger = get_logger(__name__)

# Answers whether one thing the service needs is there (e.g. "nats", "database").
ReadinessCheck = Callable[[], Awaitable[bool]]
# Updates some gauges; it may fail (the broker is away): the next sample tries again.
Sampler = Callable[[], Awaitable[None]]

# A readiness check that hangs counts as failing; a probe must answer fast.
CHECK_TIMEOUT_SECONDS = 2.0

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside a running service: the service, not uvicorn, owns SIGINT and SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _run_check(check: ReadinessCheck) -> bool:
    try:
        return await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
    except Exception:
        return False


class OperationsEndpoint:
    """Serves /livez, /readyz and /metrics, and runs the samplers that feed the gauges."""

    def __init__(
        self,
        settings: HubSettings,
        *,
        readiness: Mapping[str, ReadinessCheck],
        samplers: Sequence[Sampler] = (),
    ) -> None:
        self._settings = settings
        self._readiness = dict(readiness)
        self._samplers = list(samplers)
        self._server: _EmbeddedServer | None = None
        self._serving: asyncio.Task[None] | None = None
        self._sampling: list[asyncio.Task[None]] = []

    @property
    def enabled(self) -> bool:
        return self._settings.operations_port > 0

    async def start(self) -> None:
        if not self.enabled:
            return
        config = uvicorn.Config(
            self.asgi,
            host=self._settings.operations_host,
            port=self._settings.operations_port,
            log_config=None,
            access_log=False,
            lifespan="off",
            interface="asgi3",
        )
        self._server = _EmbeddedServer(config)
        self._serving = asyncio.create_task(self._server.serve(), name="operations-endpoint")
        self._sampling = [asyncio.create_task(self._sample_forever(sampler)) for sampler in self._samplers]
        logger.info(
            "operations endpoint",
            url=f"http://{self._settings.operations_host}:{self._settings.operations_port}/metrics",
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True  # uvicorn finishes the answers in hand, then ends
        await asyncio.gather(*(cancel_and_wait(task) for task in self._sampling))
        if self._serving is not None:
            await asyncio.gather(self._serving, return_exceptions=True)
        self._sampling, self._serving = [], None

    async def _sample_forever(self, sampler: Sampler) -> None:
        failing = False
        while True:
            try:
                await sampler()
            except Exception as error:
                if not failing:  # once per outage, not every few seconds
                    logger.warning("metrics sample failed", error=repr(error)[:300])
                failing = True
            else:
                failing = False
            await asyncio.sleep(self._settings.metrics_sample_seconds)

    async def readiness(self) -> list[str]:
        """The names of the checks that fail now (empty: ready)."""
        names = list(self._readiness)
        results = await asyncio.gather(*(_run_check(self._readiness[name]) for name in names))
        return [name for name, ok in zip(names, results, strict=True) if not ok]

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method not in ("GET", "HEAD"):
            await _answer(send, 405, b"method not allowed\n", "text/plain")
        elif path == "/livez":
            await _answer(send, 200, b'{"status":"ok"}', "application/json")
        elif path == "/readyz":
            failing = await self.readiness()
            body = {"status": "ready"} if not failing else {"status": "not ready", "failing": failing}
            await _answer(send, 503 if failing else 200, json.dumps(body).encode(), "application/json")
        elif path == "/metrics":
            await _answer(send, 200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        else:
            await _answer(send, 404, b"not found\n", "text/plain")


async def _answer(send: Send, status: int, body: bytes, content_type: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode()), (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------ shared checks and samplers


class StartUp:
    """Whether the service's start-up is over: until then (it may wait for the registry to
    declare the topology) it is not ready, although connected."""

    def __init__(self) -> None:
        self.over = False

    async def check(self) -> bool:
        return self.over


def nats_connected(broker: NatsBroker) -> ReadinessCheck:
    """Ready while the service's broker holds a live connection to NATS."""

    async def check() -> bool:
        return bool(broker.connection.is_connected)  # raises before the first connect: not ready

    return check


def connected_with_database(broker: NatsBroker, engine: AsyncEngine) -> dict[str, ReadinessCheck]:
    """Readiness of a service that owns a database: NATS connected and the database answers."""
    return {"nats": nats_connected(broker), "database": functools.partial(database_ok, engine)}


def consumer_lag(broker: NatsBroker, consumers: Sequence[ConsumerSpec]) -> Sampler:
    """Samples each durable's lag: messages not yet delivered plus those delivered and not
    yet acknowledged (from the consumer's info on the broker)."""

    async def sample() -> None:
        js = jetstream_of(broker)
        for spec in consumers:
            info = await js.consumer_info(spec.stream, spec.durable)
            lag = (info.num_pending or 0) + (info.num_ack_pending or 0)
            metrics.consumer_lag_messages.labels(consumer=spec.durable).set(lag)

    return sample


def outbox_backlog(sessions: async_sessionmaker[AsyncSession], table: Table) -> Sampler:
    """Samples how many events of an outbox wait to be relayed."""

    async def sample() -> None:
        metrics.outbox_backlog_events.labels(outbox=table.name).set(await outbox.backlog(sessions, table))

    return sample
