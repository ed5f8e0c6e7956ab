"""A real fetcher process on a nats-server of its own, fed refreshes straight onto the
stream, for the tests of the fetcher's own behaviour against the sandbox's faults
(tests/e2e/test_fetcher_deadlines.py, test_entra_outages.py).

The fetcher keeps 3 refreshes in hand, gives a BC request 12 s and a refresh 16 s, and
delivers a refresh at most twice, so a failure that persists ends within about half a
minute. Every run publishes for a firm of its own, so outcomes are counted per run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.aio.client import Client

from hub_common.bus import publish_event
from hub_common.events import (
    Actor,
    ClientConnection,
    CompanySnapshot,
    Envelope,
    EventData,
    RefreshRequested,
    decode_event,
    new_envelope,
)
from hub_common.local_nats import LocalNatsServer
from hub_common.streams import (
    EVENTS_STREAM,
    FETCHER_CONSUMER,
    SNAPSHOTS_STREAM,
    DeliveryLimits,
    Topology,
    declare_topology,
)
from tests.conftest import Sandbox, declare_as_the_registry
from tests.support.grants import grant_access
from tests.support.processes import ServiceProcess, start_service

REQUEST_DEADLINE_SECONDS = 14
REFRESH_DEADLINE_SECONDS = 18
IN_HAND = 3
FETCHER_SETTINGS = {
    "HUB_CONCURRENCY": str(IN_HAND),
    "HUB_BC_REQUEST_DEADLINE_SECONDS": str(REQUEST_DEADLINE_SECONDS),
    "HUB_REFRESH_DEADLINE_SECONDS": str(REFRESH_DEADLINE_SECONDS),
    # Shorter than the 10 s latency of the tests: BC's slow answers are ended by the deadlines
    # alone, never by the read timeout (a $batch answer starts only once BC has run it all).
    "HUB_HTTP_READ_TIMEOUT_SECONDS": "3",
    "HUB_FETCHER_MAX_DELIVER": "2",
    "HUB_RETRY_DELAY_SECONDS": "0.5",
    "HUB_RETRY_MAX_DELAY_SECONDS": "1",
}


@dataclass(frozen=True)
class Tenant:
    id: str
    domain: str
    companies: frozenset[uuid.UUID]


@dataclass(frozen=True)
class Stored:
    """An event the fetcher published, and when JetStream stored it."""

    envelope: Envelope[EventData]
    stored_at: datetime


@dataclass
class Outcomes:
    stored: list[Stored] = field(default_factory=list)

    def of(self, kind: type[EventData], refresh_id: uuid.UUID | None = None) -> list[Any]:
        return [
            s.envelope.data
            for s in self.stored
            if isinstance(s.envelope.data, kind) and refresh_id in (None, getattr(s.envelope.data, "refresh_id", None))
        ]

    def stored_at(self, kind: type[EventData], refresh_ids: set[uuid.UUID]) -> list[datetime]:
        return [
            s.stored_at
            for s in self.stored
            if isinstance(s.envelope.data, kind) and getattr(s.envelope.data, "refresh_id", None) in refresh_ids
        ]


def wait_until_ready(process: ServiceProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while '"fetcher ready"' not in process.log():
        if process.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the fetcher did not start:\n{process.log()[-3000:]}")
        time.sleep(0.1)


def consented_tenants(admin: httpx.Client) -> list[Tenant]:
    tenants = []
    for raw in admin.get("/tenants").json()["tenants"]:
        if not raw["consented"]:
            continue
        production = next(e for e in raw["environments"] if e["name"] == "Production")
        tenants.append(Tenant(raw["id"], raw["domain"], frozenset(uuid.UUID(c["id"]) for c in production["companies"])))
    assert len(tenants) >= 3, "the tests give three tenants a role each"
    return tenants


def refresh_of(tenant: Tenant) -> RefreshRequested:
    return RefreshRequested(
        refresh_id=uuid.uuid4(),
        client_id=uuid.uuid4(),
        connection=ClientConnection(tenant=tenant.domain, environment="Production", tenant_id=uuid.UUID(tenant.id)),
    )


async def run_refreshes(
    bus: Client,
    fetcher: ServiceProcess,
    refreshes: list[RefreshRequested],
    *,
    done: Callable[[Outcomes], bool],
    timeout: float = 90,
) -> Outcomes:
    """Publish the refreshes, in order, for a fresh firm; collect what the fetcher stores."""
    firm = uuid.uuid4()
    js = bus.jetstream()
    outcomes = Outcomes()
    subscriptions = [
        await js.subscribe(f"hub.{firm}.>", stream=EVENTS_STREAM, ordered_consumer=True),
        await js.subscribe(f"hub.{firm}.company.*.snapshot", stream=SNAPSHOTS_STREAM, ordered_consumer=True),
    ]
    for connection in {refresh.connection for refresh in refreshes}:
        assert connection.tenant_id is not None
        # The tenant granted this firm access, as the registry records it.
        await grant_access(js, firm, connection.tenant_id, connection.tenant)
    for refresh in refreshes:
        await publish_event(js, new_envelope(refresh, firm_id=firm, actor=Actor.service("test")))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not done(outcomes):
            for subscription in subscriptions:
                try:
                    message = await subscription.next_msg(timeout=0.2)
                except TimeoutError:
                    continue
                envelope = decode_event(message.data)
                if envelope.actor.id == "fetcher":
                    outcomes.stored.append(Stored(envelope, message.metadata.timestamp))
        types = [s.envelope.type for s in outcomes.stored]
        assert done(outcomes), f"not settled in {timeout}s: {types}\n{fetcher.log()[-3000:]}"
    finally:
        for subscription in subscriptions:
            await subscription.unsubscribe()
    return outcomes


async def assert_nothing_pending(bus: Client) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        info = await bus.jetstream().consumer_info(FETCHER_CONSUMER.stream, FETCHER_CONSUMER.durable)
        if info.num_ack_pending == 0 and info.num_pending == 0:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"fetcher left work unacknowledged: {info}")


def snapshots_of_every_company(tenant: Tenant, refresh: RefreshRequested) -> Callable[[Outcomes], bool]:
    def settled(outcomes: Outcomes) -> bool:
        return {s.company_id for s in outcomes.of(CompanySnapshot, refresh.refresh_id)} == tenant.companies

    return settled


# As the registry declares it with the fetcher's delivery settings: a fetcher pulls its
# durable only as its settings say.
TOPOLOGY = Topology(delivery=DeliveryLimits(fetcher_max_deliver=int(FETCHER_SETTINGS["HUB_FETCHER_MAX_DELIVER"])))


def start_lone_fetcher(name: str, broker: LocalNatsServer, sandbox: Sandbox, log_dir: Path) -> ServiceProcess:
    """The fetcher, started and ready; the caller stops it."""
    declare_as_the_registry(broker.url, TOPOLOGY)
    environment = {"HUB_NATS_URL": broker.url, **sandbox.settings_environment(), **FETCHER_SETTINGS}
    process = start_service(name, "fetcher", environment, log_dir)
    try:
        wait_until_ready(process)
    except BaseException:
        process.kill()  # the caller never gets it to stop
        raise
    return process


@asynccontextmanager
async def bus_of(broker: LocalNatsServer) -> AsyncIterator[Client]:
    connection = await nats.connect(broker.url)
    try:
        await declare_topology(connection.jetstream(), TOPOLOGY)
        yield connection
    finally:
        await connection.close()


@contextmanager
def sandbox_admin(sandbox: Sandbox) -> Iterator[httpx.Client]:
    """The sandbox's admin API; the faults a test set are cleared after it."""
    with httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls(), timeout=10) as client:
        yield client
        client.delete("/faults").raise_for_status()
