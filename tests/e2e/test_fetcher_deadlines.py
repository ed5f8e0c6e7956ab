"""Deadlines, fair scheduling and honest outcomes (issue #11), on a real fetcher process,
its own nats-server and the real sandbox's faults.

The fetcher keeps 3 refreshes in hand, gives a BC request 12 s and a refresh 16 s, and
delivers a refresh at most twice, so a failure that persists ends within about half a
minute. Every outcome is counted per firm: each test publishes for a firm of its own.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client

from hub_common.bus import publish_event
from hub_common.events import (
    Actor,
    ClientConnection,
    CompaniesDiscovered,
    CompanySnapshot,
    Envelope,
    EventData,
    FailureKind,
    RefreshDeferred,
    RefreshFailed,
    RefreshRequested,
    decode_event,
    new_envelope,
)
from hub_common.local_nats import LocalNatsServer
from hub_common.streams import EVENTS_STREAM, FETCHER_CONSUMER, SNAPSHOTS_STREAM, declare_topology
from tests.conftest import Sandbox
from tests.support.grants import grant_access
from tests.support.processes import ServiceProcess, start_service

pytestmark = pytest.mark.e2e

REQUEST_DEADLINE_SECONDS = 12
REFRESH_DEADLINE_SECONDS = 16
IN_HAND = 3
FETCHER_SETTINGS = {
    "HUB_CONCURRENCY": str(IN_HAND),
    "HUB_BC_REQUEST_DEADLINE_SECONDS": str(REQUEST_DEADLINE_SECONDS),
    "HUB_REFRESH_DEADLINE_SECONDS": str(REFRESH_DEADLINE_SECONDS),
    # Longer than the 9 s latency below: only the deadlines end a slow answer here.
    "HUB_HTTP_READ_TIMEOUT_SECONDS": "11",
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


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNatsServer]:
    with LocalNatsServer(tmp_path_factory.mktemp("deadlines-nats")) as server:
        yield server


@pytest.fixture(scope="module")
def fetcher(
    broker: LocalNatsServer, sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    process = start_service(
        "fetcher-deadlines",
        "fetcher",
        {"HUB_NATS_URL": broker.url, **sandbox.settings_environment(), **FETCHER_SETTINGS},
        tmp_path_factory.mktemp("deadlines-logs"),
    )
    _wait_until_ready(process)
    yield process
    process.stop()


def _wait_until_ready(process: ServiceProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while '"fetcher ready"' not in process.log():
        if process.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the fetcher did not start:\n{process.log()[-3000:]}")
        time.sleep(0.1)


@pytest.fixture
async def bus(broker: LocalNatsServer) -> AsyncIterator[Client]:
    connection = await nats.connect(broker.url)
    await declare_topology(connection.jetstream())
    yield connection
    await connection.close()


@pytest.fixture
def admin(sandbox: Sandbox) -> Iterator[httpx.Client]:
    client = httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls(), timeout=10)
    yield client
    client.delete("/faults").raise_for_status()


def _consented_tenants(admin: httpx.Client) -> list[Tenant]:
    tenants = []
    for raw in admin.get("/tenants").json()["tenants"]:
        if not raw["consented"]:
            continue
        production = next(e for e in raw["environments"] if e["name"] == "Production")
        tenants.append(Tenant(raw["id"], raw["domain"], frozenset(uuid.UUID(c["id"]) for c in production["companies"])))
    assert len(tenants) >= 3, "the tests give three tenants a role each"
    return tenants


# Each tenant has one role in this module, so no test finds a token another left cached.
def _trickling(admin: httpx.Client) -> Tenant:
    return _consented_tenants(admin)[0]


def _healthy(admin: httpx.Client) -> Tenant:
    return _consented_tenants(admin)[1]


def _fresh_for_entra(admin: httpx.Client) -> Tenant:
    return _consented_tenants(admin)[2]


def _refresh(tenant: Tenant) -> RefreshRequested:
    return RefreshRequested(
        refresh_id=uuid.uuid4(),
        client_id=uuid.uuid4(),
        connection=ClientConnection(tenant=tenant.domain, environment="Production", tenant_id=uuid.UUID(tenant.id)),
    )


async def _run(
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


async def _assert_nothing_pending(bus: Client) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        info = await bus.jetstream().consumer_info(FETCHER_CONSUMER.stream, FETCHER_CONSUMER.durable)
        if info.num_ack_pending == 0 and info.num_pending == 0:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"fetcher left work unacknowledged: {info}")


def _snapshots_of_every_company(tenant: Tenant, refresh: RefreshRequested) -> Callable[[Outcomes], bool]:
    def settled(outcomes: Outcomes) -> bool:
        return {s.company_id for s in outcomes.of(CompanySnapshot, refresh.refresh_id)} == tenant.companies

    return settled


async def test_a_trickling_tenant_holds_only_its_own_places(
    bus: Client, fetcher: ServiceProcess, admin: httpx.Client
) -> None:
    slow, healthy = _trickling(admin), _healthy(admin)
    # A byte a second: every read gets data in time, only the request's deadline ends it.
    admin.put(f"/tenants/{slow.id}/faults", json={"kind": "trickle", "trickle_interval_seconds": 1}).raise_for_status()
    trickling = [_refresh(slow) for _ in range(IN_HAND - 1)]
    # More healthy refreshes than places: the last ones can only start once an earlier
    # healthy one has ended, while the trickling ones are still in hand.
    healthy_refreshes = [_refresh(healthy) for _ in range(IN_HAND)]

    def settled(outcomes: Outcomes) -> bool:
        return all(outcomes.of(RefreshFailed, r.refresh_id) for r in trickling) and all(
            _snapshots_of_every_company(healthy, r)(outcomes) for r in healthy_refreshes
        )

    outcomes = await _run(bus, fetcher, [*trickling, *healthy_refreshes], done=settled)

    for refresh in trickling:
        deferred: list[RefreshDeferred] = outcomes.of(RefreshDeferred, refresh.refresh_id)
        assert [(d.attempt, d.company_id, d.failure.kind) for d in deferred] == [(1, None, FailureKind.TIMEOUT)]
        assert deferred[0].next_attempt_at > deferred[0].failure.occurred_at
        failed: list[RefreshFailed] = outcomes.of(RefreshFailed, refresh.refresh_id)
        assert len(failed) == 1
        assert failed[0].company_id is None
        assert failed[0].failure.kind is FailureKind.TIMEOUT
        assert "HUB_BC_REQUEST_DEADLINE_SECONDS" in (failed[0].failure.message or "")
        assert failed[0].failure.fix
        assert not outcomes.of(CompaniesDiscovered, refresh.refresh_id)
    for refresh in healthy_refreshes:
        assert not outcomes.of(RefreshFailed, refresh.refresh_id)
        assert not outcomes.of(RefreshDeferred, refresh.refresh_id)
    last_healthy = max(outcomes.stored_at(CompanySnapshot, {r.refresh_id for r in healthy_refreshes}))
    first_slow_outcome = min(outcomes.stored_at(RefreshDeferred, {r.refresh_id for r in trickling}))
    assert last_healthy < first_slow_outcome, "every healthy refresh ended while the trickling ones were in hand"
    await _assert_nothing_pending(bus)


async def test_a_refresh_past_its_deadline_ends_as_timeout(
    bus: Client, fetcher: ServiceProcess, admin: httpx.Client
) -> None:
    tenant = _healthy(admin)
    # Each request takes 9 s, within its own 12 s deadline; discovery and then the companies'
    # reads take 18 s, past the refresh's 16 s.
    admin.put(f"/tenants/{tenant.id}/faults", json={"kind": "latency", "latency_ms": 9000}).raise_for_status()
    refresh = _refresh(tenant)

    def settled(outcomes: Outcomes) -> bool:
        return {f.company_id for f in outcomes.of(RefreshFailed, refresh.refresh_id)} == tenant.companies

    outcomes = await _run(bus, fetcher, [refresh], done=settled)
    failed: list[RefreshFailed] = outcomes.of(RefreshFailed)
    assert len(failed) == len(tenant.companies)
    for failure in failed:
        assert failure.failure.kind is FailureKind.TIMEOUT
        assert "HUB_REFRESH_DEADLINE_SECONDS" in (failure.failure.message or "")
    deferred: list[RefreshDeferred] = outcomes.of(RefreshDeferred)
    assert {d.company_id for d in deferred} == tenant.companies, "each company said it would be read again"
    assert {d.attempt for d in deferred} == {1}
    assert not outcomes.of(CompanySnapshot)
    await _assert_nothing_pending(bus)


async def test_a_retry_after_is_announced_before_the_next_try(
    bus: Client, fetcher: ServiceProcess, admin: httpx.Client
) -> None:
    tenant = _healthy(admin)
    fault = {"kind": "upgrading", "retry_after_seconds": 3, "count": 1}
    admin.put(f"/tenants/{tenant.id}/faults", json=fault).raise_for_status()
    refresh = _refresh(tenant)
    outcomes = await _run(bus, fetcher, [refresh], done=_snapshots_of_every_company(tenant, refresh))
    deferred: list[RefreshDeferred] = outcomes.of(RefreshDeferred)
    assert len(deferred) == 1
    announced = deferred[0]
    assert (announced.attempt, announced.company_id) == (1, None)
    assert announced.failure.kind is FailureKind.ENVIRONMENT_OFFLINE
    assert announced.failure.http_status == 503
    waited = (announced.next_attempt_at - announced.failure.occurred_at).total_seconds()
    assert 3 <= waited < 10, "the next try is when Retry-After said"
    [stored] = [s for s in outcomes.stored if isinstance(s.envelope.data, RefreshDeferred)]
    snapshots_stored = outcomes.stored_at(CompanySnapshot, {refresh.refresh_id})
    assert stored.stored_at < min(snapshots_stored), "announced before the next try, not after"
    assert not outcomes.of(RefreshFailed)
    await _assert_nothing_pending(bus)


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ({"kind": "repeated_next_link"}, "already read"),
        ({"kind": "duplicate_company_ids"}, "more than once"),
    ],
)
async def test_answers_that_cannot_be_trusted_are_bad_responses_at_once(
    bus: Client, fetcher: ServiceProcess, admin: httpx.Client, fault: dict[str, Any], words: str
) -> None:
    tenant = _healthy(admin)
    admin.put(f"/tenants/{tenant.id}/faults", json=fault).raise_for_status()
    refresh = _refresh(tenant)
    outcomes = await _run(bus, fetcher, [refresh], done=lambda o: bool(o.of(RefreshFailed)))
    [failed] = outcomes.of(RefreshFailed)
    assert failed.company_id is None
    assert failed.failure.kind is FailureKind.BAD_RESPONSE
    assert words in (failed.failure.message or "")
    assert not outcomes.of(RefreshDeferred), "a bad answer is not retried"
    assert not outcomes.of(CompaniesDiscovered)
    await _assert_nothing_pending(bus)


async def test_entra_answering_not_json_is_a_bad_answer_from_entra(
    bus: Client, fetcher: ServiceProcess, admin: httpx.Client
) -> None:
    tenant = _fresh_for_entra(admin)
    admin.put(f"/tenants/{tenant.id}/faults", json={"kind": "entra_not_json"}).raise_for_status()
    refresh = _refresh(tenant)
    outcomes = await _run(bus, fetcher, [refresh], done=lambda o: bool(o.of(RefreshFailed)))
    [failed] = outcomes.of(RefreshFailed)
    assert failed.failure.kind is FailureKind.BAD_RESPONSE, "not an unknown tenant"
    assert "Microsoft Entra ID" in failed.failure.summary
    assert failed.failure.http_status == 200
    assert "not JSON" in (failed.failure.message or "")
    await _assert_nothing_pending(bus)
