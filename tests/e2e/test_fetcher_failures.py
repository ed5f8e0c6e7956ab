"""Every failure kind end to end through a real fetcher process and the sandbox's faults:
the right event is published, transient failures are retried until they pass, and every
request ends in exactly one outcome per company, with nothing left unacknowledged."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
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
    ConnectionTested,
    ConnectionTestRequested,
    Envelope,
    EventData,
    FailureKind,
    RefreshDeferred,
    RefreshFailed,
    RefreshRequested,
    decode_event,
    new_envelope,
)
from hub_common.streams import EVENTS_STREAM, FETCHER_CONSUMER, SNAPSHOTS_STREAM, declare_topology
from hub_fetcher.refresh import CUES_GRACE_SECONDS
from tests.conftest import Sandbox
from tests.e2e.conftest import FETCHER_TEST_LIMITS
from tests.support.grants import grant_access
from tests.support.processes import ServiceProcess, start_service

pytestmark = pytest.mark.e2e


@dataclass
class Tenant:
    id: str
    domain: str
    companies: list[dict[str, Any]]


@dataclass
class Outcomes:
    events: list[Envelope[EventData]] = field(default_factory=list)

    def of(self, kind: type[EventData]) -> list[Any]:
        return [e.data for e in self.events if isinstance(e.data, kind)]


@pytest.fixture(scope="module")
def fetcher(nats_url: str, sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    process = start_service(
        "fetcher-faults",
        "fetcher",
        {"HUB_NATS_URL": nats_url, **sandbox.settings_environment(), **FETCHER_TEST_LIMITS},
        tmp_path_factory.mktemp("fetcher-logs"),
    )
    yield process
    process.stop()


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[Client]:
    connection = await nats.connect(nats_url)
    await declare_topology(connection.jetstream())
    yield connection
    await connection.close()


@pytest.fixture
def admin(sandbox: Sandbox) -> Iterator[httpx.Client]:
    client = httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls(), timeout=10)
    yield client
    client.delete("/faults").raise_for_status()


def _tenants(admin: httpx.Client) -> list[dict[str, Any]]:
    tenants: list[dict[str, Any]] = admin.get("/tenants").json()["tenants"]
    return tenants


def _tenant(admin: httpx.Client, *, index: int) -> Tenant:
    raw = _tenants(admin)[index]
    production = next(e for e in raw["environments"] if e["name"] == "Production")
    return Tenant(raw["id"], raw["domain"], production["companies"])


async def _run(
    bus: Client,
    fetcher: ServiceProcess,
    data_for: Any,
    *,
    done: Any,
    timeout: float = 45,
) -> Outcomes:
    """Publish one request for a fresh firm and collect everything the fetcher answers."""
    firm = uuid.uuid4()
    js = bus.jetstream()
    outcomes = Outcomes()
    subscriptions = [
        await js.subscribe(f"hub.{firm}.>", stream=EVENTS_STREAM, ordered_consumer=True),
        await js.subscribe(f"hub.{firm}.company.*.snapshot", stream=SNAPSHOTS_STREAM, ordered_consumer=True),
    ]
    data = data_for()
    connection = getattr(data, "connection", None)
    if isinstance(connection, ClientConnection) and connection.tenant_id is not None:
        # The tenant granted this firm access, as the registry records it.
        await grant_access(js, firm, connection.tenant_id, connection.tenant)
    await publish_event(js, new_envelope(data, firm_id=firm, actor=Actor.service("test")))
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
                    outcomes.events.append(envelope)
        assert done(outcomes), f"no outcome in {timeout}s: {[e.type for e in outcomes.events]}\n{fetcher.log()[-3000:]}"
        await asyncio.sleep(0.5)  # anything published twice would have arrived by now
        for subscription in subscriptions:
            while True:
                try:
                    message = await subscription.next_msg(timeout=0.2)
                except TimeoutError:
                    break
                outcomes.events.append(decode_event(message.data))
    finally:
        for subscription in subscriptions:
            await subscription.unsubscribe()
    return outcomes


def _refresh(tenant: Tenant, environment: str = "Production", *, accounts_revision: int = 0) -> Any:
    def make() -> RefreshRequested:
        return RefreshRequested(
            refresh_id=uuid.uuid4(),
            client_id=uuid.uuid4(),
            connection=ClientConnection(tenant=tenant.domain, environment=environment, tenant_id=uuid.UUID(tenant.id)),
            accounts_revision=accounts_revision,
        )

    return make


def _every_company_settled(tenant: Tenant) -> Any:
    def settled(outcomes: Outcomes) -> bool:
        if any(f.company_id is None for f in outcomes.of(RefreshFailed)):
            return True
        finished = {s.company_id for s in outcomes.of(CompanySnapshot)} | {
            f.company_id for f in outcomes.of(RefreshFailed)
        }
        return {uuid.UUID(c["id"]) for c in tenant.companies} <= finished

    return settled


async def _assert_nothing_pending(bus: Client) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        info = await bus.jetstream().consumer_info(FETCHER_CONSUMER.stream, FETCHER_CONSUMER.durable)
        if info.num_ack_pending == 0 and info.num_pending == 0:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"fetcher left work unacknowledged: {info}")


def _single_failure(outcomes: Outcomes) -> RefreshFailed:
    failures = outcomes.of(RefreshFailed)
    assert len(failures) == 1, [e.type for e in outcomes.events]
    assert not outcomes.of(CompanySnapshot)
    failure: RefreshFailed = failures[0]
    assert failure.failure.summary
    assert failure.failure.fix
    return failure


async def test_a_refresh_of_one_company_names_it_in_its_discovery_and_reads_only_it(
    bus: Client, fetcher: ServiceProcess, admin: httpx.Client
) -> None:
    """The discovery says which company the refresh is about: a gateway replica may apply
    it before the request and must not mark the siblings refreshing."""
    tenant = _tenant(admin, index=3)
    only = uuid.UUID(tenant.companies[0]["id"])

    def one_company() -> RefreshRequested:
        refresh: RefreshRequested = _refresh(tenant)().model_copy(update={"company_id": only})
        return refresh

    outcomes = await _run(
        bus, fetcher, one_company, done=lambda seen: any(s.company_id == only for s in seen.of(CompanySnapshot))
    )
    [discovery] = outcomes.of(CompaniesDiscovered)
    assert discovery.refresh_company_id == only
    assert len(discovery.companies) == len(tenant.companies), "every company of the client is named"
    assert [s.company_id for s in outcomes.of(CompanySnapshot)] == [only]


async def test_a_refresh_of_one_company_failing_for_the_whole_client_names_the_company(
    bus: Client, fetcher: ServiceProcess, admin: httpx.Client
) -> None:
    tenant = _tenant(admin, index=3)
    only = uuid.UUID(tenant.companies[0]["id"])
    admin.put(f"/tenants/{tenant.id}/faults", json={"kind": "environment_removed"}).raise_for_status()

    def one_company() -> RefreshRequested:
        refresh: RefreshRequested = _refresh(tenant)().model_copy(update={"company_id": only})
        return refresh

    outcomes = await _run(bus, fetcher, one_company, done=lambda seen: bool(seen.of(RefreshFailed)), timeout=60)
    failure = _single_failure(outcomes)
    assert (failure.company_id, failure.refresh_company_id) == (None, only)


async def test_a_healthy_refresh_gives_one_snapshot_per_company(
    bus: Client, fetcher: ServiceProcess, admin: httpx.Client
) -> None:
    tenant = _tenant(admin, index=3)
    outcomes = await _run(bus, fetcher, _refresh(tenant), done=_every_company_settled(tenant))
    assert len(outcomes.of(CompaniesDiscovered)) == 1
    assert sorted(str(s.company_id) for s in outcomes.of(CompanySnapshot)) == sorted(c["id"] for c in tenant.companies)
    assert not outcomes.of(RefreshFailed)
    await _assert_nothing_pending(bus)


@pytest.mark.parametrize(
    ("fault", "kind", "status", "code"),
    [
        ({"kind": "invalid_credentials"}, FailureKind.CREDENTIALS_REJECTED, 401, "Authentication_InvalidCredentials"),
        ({"kind": "environment_removed"}, FailureKind.ENVIRONMENT_NOT_FOUND, 404, "NoEnvironment"),
        ({"kind": "malformed_body"}, FailureKind.BAD_RESPONSE, 200, None),
        ({"kind": "oversized_body", "size_mb": 5}, FailureKind.BAD_RESPONSE, 200, None),
        ({"kind": "upgrading", "retry_after_seconds": 1}, FailureKind.ENVIRONMENT_OFFLINE, 503, "ServiceUnavailable"),
    ],
)
async def test_permanent_failures_become_one_refresh_failed(
    bus: Client,
    fetcher: ServiceProcess,
    admin: httpx.Client,
    fault: dict[str, Any],
    kind: FailureKind,
    status: int,
    code: str | None,
) -> None:
    tenant = _tenant(admin, index=3)
    admin.put(f"/tenants/{tenant.id}/faults", json=fault).raise_for_status()
    outcomes = await _run(bus, fetcher, _refresh(tenant), done=_every_company_settled(tenant), timeout=60)
    failure = _single_failure(outcomes)
    assert failure.failure.kind is kind
    assert failure.failure.http_status == status
    assert failure.failure.bc_error_code == code
    if code is not None:
        assert failure.failure.correlation_id, "BC's correlation id is kept for the administrator"
    await _assert_nothing_pending(bus)


async def test_no_access_to_one_company_fails_only_that_company(
    bus: Client, fetcher: ServiceProcess, admin: httpx.Client
) -> None:
    # A tenant whose BC works in Danish or German: BC says a permission is missing only in
    # its message, which the fetcher must ask for in English to recognise.
    foreign = next(i for i, t in enumerate(_tenants(admin)) if t["consented"] and not t["language"].startswith("en"))
    tenant = _tenant(admin, index=foreign)
    forbidden = tenant.companies[0]["id"]
    admin.put(f"/tenants/{tenant.id}/faults", json={"kind": "company_forbidden", "company_id": forbidden})
    refresh = _refresh(tenant, accounts_revision=3)
    outcomes = await _run(bus, fetcher, refresh, done=_every_company_settled(tenant))
    failures = outcomes.of(RefreshFailed)
    # Every outcome carries the card revision its refresh was asked at, so what a refresh of
    # a place the card no longer names says is told apart.
    for outcome in (*failures, *outcomes.of(CompaniesDiscovered), *outcomes.of(CompanySnapshot)):
        assert outcome.accounts_revision == 3, outcome
    assert [str(f.company_id) for f in failures] == [forbidden]
    assert failures[0].failure.kind is FailureKind.NO_COMPANY_ACCESS
    assert failures[0].failure.http_status == 500
    assert (failures[0].failure.message or "").startswith("Sorry, the current permissions prevented the action.")
    assert {str(s.company_id) for s in outcomes.of(CompanySnapshot)} == {c["id"] for c in tenant.companies[1:]}
    await _assert_nothing_pending(bus)


async def test_unknown_tenant_and_missing_consent(bus: Client, fetcher: ServiceProcess, admin: httpx.Client) -> None:
    unknown = Tenant(str(uuid.uuid4()), "no-such-tenant.onmicrosoft.com", [])
    outcomes = await _run(bus, fetcher, _refresh(unknown), done=lambda o: bool(o.of(RefreshFailed)))
    assert _single_failure(outcomes).failure.kind is FailureKind.TENANT_NOT_FOUND
    unconsented = next(t for t in _tenants(admin) if not t["consented"])
    outcomes = await _run(
        bus,
        fetcher,
        _refresh(Tenant(unconsented["id"], unconsented["domain"], [])),
        done=lambda o: bool(o.of(RefreshFailed)),
    )
    failure = _single_failure(outcomes)
    assert failure.failure.kind is FailureKind.CONSENT_MISSING
    assert "AADSTS700016" in (failure.failure.message or "")
    await _assert_nothing_pending(bus)


async def test_a_firm_without_a_grant_is_refused_before_anything_is_read(
    bus: Client, fetcher: ServiceProcess, admin: httpx.Client, sandbox: Sandbox
) -> None:
    """No grant for the firm: one RefreshFailed (access_not_granted), and the sandbox saw no
    request from the hub for that tenant at all."""
    tenant = _tenant(admin, index=2)
    before = _requests_served(admin, tenant)

    def ungranted() -> RefreshRequested:
        # The tenant id is right, but no grant for this fresh firm was ever written.
        connection = ClientConnection(tenant=tenant.domain, environment="Production", tenant_id=uuid.UUID(tenant.id))
        return RefreshRequested(refresh_id=uuid.uuid4(), client_id=uuid.uuid4(), connection=connection)

    firm = uuid.uuid4()
    js = bus.jetstream()
    subscription = await js.subscribe(f"hub.{firm}.>", stream=EVENTS_STREAM, ordered_consumer=True)
    await publish_event(js, new_envelope(ungranted(), firm_id=firm, actor=Actor.service("test")))
    outcomes: list[Envelope[EventData]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(isinstance(e.data, RefreshFailed) for e in outcomes):
        try:
            outcomes.append(decode_event((await subscription.next_msg(timeout=0.5)).data))
        except TimeoutError:
            continue
    await subscription.unsubscribe()
    failures = [e.data for e in outcomes if isinstance(e.data, RefreshFailed)]
    assert len(failures) == 1 and failures[0].failure.kind is FailureKind.ACCESS_NOT_GRANTED
    assert not [e for e in outcomes if isinstance(e.data, CompaniesDiscovered)]
    assert _requests_served(admin, tenant) == before, "Business Central was called without a grant"
    await _assert_nothing_pending(bus)


def _requests_served(admin: httpx.Client, tenant: Tenant) -> int:
    counters = admin.get("/limits").raise_for_status().json()["tenants"]
    return sum(int(c["requests_served"]) for c in counters if c["tenant_id"] == tenant.id)


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "upgrading", "retry_after_seconds": 1, "count": 2},
        {"kind": "too_many_requests", "retry_after_seconds": 1, "count": 2},
        # BC documents no Retry-After on its 429: the fetcher waits a few seconds of its own.
        {"kind": "too_many_requests", "send_retry_after": False, "count": 1},
        # BC's 504 after a hang; the read timeout no longer ends it first (only the deadline could).
        {"kind": "timeout", "timeout_seconds": 4, "count": 1},
        # BC failing inside (a 500 that is not about permissions) on a read the figures need.
        {"kind": "server_error", "entity_set": "salesInvoices", "count": 1},
    ],
)
async def test_transient_failures_are_retried_until_they_pass(
    bus: Client, fetcher: ServiceProcess, admin: httpx.Client, fault: dict[str, Any]
) -> None:
    tenant = _tenant(admin, index=3)
    admin.put(f"/tenants/{tenant.id}/faults", json=fault).raise_for_status()
    outcomes = await _run(bus, fetcher, _refresh(tenant), done=_every_company_settled(tenant), timeout=60)
    assert not outcomes.of(RefreshFailed), [f.failure for f in outcomes.of(RefreshFailed)]
    snapshots = outcomes.of(CompanySnapshot)
    assert sorted(str(s.company_id) for s in snapshots) == sorted(c["id"] for c in tenant.companies)
    assert len({s.company_id for s in snapshots}) == len(snapshots), "each company once"
    await _assert_nothing_pending(bus)


@pytest.mark.parametrize(
    ("nth", "fault"),
    [
        (0, {"kind": "too_many_requests", "retry_after_seconds": 1}),
        (1, {"kind": "timeout", "timeout_seconds": 1}),
        # Hanging: the company is done without the cues a grace after its $batch answered,
        # not when the request's deadline (120 s here) ends the cue read.
        (2, {"kind": "timeout", "timeout_seconds": 300}),
    ],
)
async def test_a_busy_cue_service_fails_no_company(
    bus: Client, fetcher: ServiceProcess, admin: httpx.Client, nth: int, fault: dict[str, Any]
) -> None:
    """The cue services are a fast path beside the $batch: BC throttling, timing out or
    hanging on them alone leaves cash to API v2.0 instead of deferring every company.
    (The fetcher then reads that environment without cues for a while: a tenant per case.)"""
    tenants = _tenants(admin)
    index = [i for i, t in enumerate(tenants) if t["consented"]][-1 - nth]
    tenant = _tenant(admin, index=index)
    # A BC whose cue services are published (version 29), as it was before the test after it.
    was = int(tenants[index]["bc_version"].split(".")[0])
    admin.put(f"/tenants/{tenant.id}/bc-version", json={"major": 29}).raise_for_status()
    cues_only = {**fault, "entity_set": "AccountantPortalFinanceCues"}
    admin.put(f"/tenants/{tenant.id}/faults", json=cues_only).raise_for_status()
    try:
        outcomes = await _run(bus, fetcher, _refresh(tenant), done=_every_company_settled(tenant), timeout=60)
    finally:
        admin.put(f"/tenants/{tenant.id}/bc-version", json={"major": was}).raise_for_status()
    assert not outcomes.of(RefreshFailed), [f.failure for f in outcomes.of(RefreshFailed)]
    assert not outcomes.of(RefreshDeferred), [d.failure for d in outcomes.of(RefreshDeferred)]
    snapshots: list[CompanySnapshot] = outcomes.of(CompanySnapshot)
    assert sorted(str(s.company_id) for s in snapshots) == sorted(c["id"] for c in tenant.companies)
    assert {s.figures.cash.source for s in snapshots if s.figures.cash} == {"api"}
    assert all(s.figures.cash for s in snapshots)
    if nth == 2:
        # The figures are as of the $batch's answer, not of the end of the wait for the cues.
        for envelope in outcomes.events:
            if isinstance(envelope.data, CompanySnapshot):
                waited = envelope.occurred_at - envelope.data.read_at
                assert waited > timedelta(seconds=CUES_GRACE_SECONDS / 2), waited
    await _assert_nothing_pending(bus)


async def test_a_retry_reads_only_the_companies_still_to_read(
    bus: Client, fetcher: ServiceProcess, admin: httpx.Client
) -> None:
    """One company throttled: the refresh is deferred for it alone, and the next delivery
    reads that company, not every company of the client again."""
    consented = [i for i, t in enumerate(_tenants(admin)) if t["consented"]]
    tenant = max((_tenant(admin, index=i) for i in consented), key=lambda t: len(t.companies))
    assert len(tenant.companies) >= 2
    before = _requests_served(admin, tenant)
    await _run(bus, fetcher, _refresh(tenant), done=_every_company_settled(tenant))
    whole_client = _requests_served(admin, tenant) - before

    # The first company's $batch to arrive is throttled, once; the others are read.
    throttled_once = {"kind": "too_many_requests", "entity_set": "$batch", "retry_after_seconds": 1, "count": 1}
    admin.put(f"/tenants/{tenant.id}/faults", json=throttled_once).raise_for_status()
    before = _requests_served(admin, tenant)
    outcomes = await _run(bus, fetcher, _refresh(tenant), done=_every_company_settled(tenant), timeout=60)
    served = _requests_served(admin, tenant) - before

    deferred: list[RefreshDeferred] = outcomes.of(RefreshDeferred)
    assert [(d.attempt, d.failure.kind) for d in deferred] == [(1, FailureKind.THROTTLED)]
    assert deferred[0].company_id is not None
    assert not outcomes.of(RefreshFailed)
    assert sorted(str(s.company_id) for s in outcomes.of(CompanySnapshot)) == sorted(c["id"] for c in tenant.companies)
    # The throttled $batch was not served; the retry repeats the discovery and reads the
    # one company: about the whole client's requests plus a few. Reading every company
    # again would serve the whole client twice less the one throttled $batch.
    one_company = (whole_client - 1) / len(tenant.companies)
    assert served < whole_client + one_company, (served, whole_client)
    await _assert_nothing_pending(bus)


async def test_connection_test_reports_companies_or_the_failure(
    bus: Client, fetcher: ServiceProcess, admin: httpx.Client
) -> None:
    tenant = _tenant(admin, index=3)

    def request(domain: str) -> Any:
        connection = ClientConnection(tenant=domain, environment="Production", tenant_id=uuid.UUID(tenant.id))
        return lambda: ConnectionTestRequested(test_id=uuid.uuid4(), connection=connection)

    ok = await _run(bus, fetcher, request(tenant.domain), done=lambda o: bool(o.of(ConnectionTested)))
    tested: ConnectionTested = ok.of(ConnectionTested)[0]
    assert tested.ok
    assert tested.failure is None
    assert tested.latency_ms is not None
    assert {str(c.company_id) for c in tested.companies} == {c["id"] for c in tenant.companies}

    admin.put(f"/tenants/{tenant.id}/faults", json={"kind": "environment_removed"}).raise_for_status()
    failed = await _run(bus, fetcher, request(tenant.domain), done=lambda o: bool(o.of(ConnectionTested)))
    result: ConnectionTested = failed.of(ConnectionTested)[0]
    assert not result.ok
    assert result.failure is not None
    assert result.failure.kind is FailureKind.ENVIRONMENT_NOT_FOUND
