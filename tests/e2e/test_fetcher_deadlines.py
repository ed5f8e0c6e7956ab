"""Deadlines, fair scheduling and honest outcomes (issue #11), on a real fetcher process,
its own nats-server and the real sandbox's faults.

The fetcher keeps 3 refreshes in hand, gives a BC request 12 s and a refresh 16 s, and
delivers a refresh at most twice, so a failure that persists ends within about half a
minute. Every outcome is counted per firm: each test publishes for a firm of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from nats.aio.client import Client

from hub_common.events import (
    ClientConnection,
    CompaniesDiscovered,
    CompanySnapshot,
    FailureKind,
    RefreshDeferred,
    RefreshFailed,
    RefreshRequested,
)
from hub_common.local_nats import LocalNatsServer
from tests.conftest import Sandbox
from tests.support.lone_fetcher import (
    IN_HAND,
    Outcomes,
    Tenant,
    assert_nothing_pending,
    bus_of,
    consented_tenants,
    refresh_of,
    run_refreshes,
    sandbox_admin,
    snapshots_of_every_company,
    start_lone_fetcher,
)
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNatsServer]:
    with LocalNatsServer(tmp_path_factory.mktemp("deadlines-nats")) as server:
        yield server


@pytest.fixture(scope="module")
def fetcher(
    broker: LocalNatsServer, sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    process = start_lone_fetcher("fetcher-deadlines", broker, sandbox, tmp_path_factory.mktemp("deadlines-logs"))
    yield process
    process.stop()


@pytest.fixture
async def bus(broker: LocalNatsServer) -> AsyncIterator[Client]:
    async with bus_of(broker) as connection:
        yield connection


@pytest.fixture
def admin(sandbox: Sandbox) -> Iterator[httpx.Client]:
    with sandbox_admin(sandbox) as client:
        yield client


# Each tenant has one role in this module, so no test finds a token another left cached.
def _trickling(admin: httpx.Client) -> Tenant:
    return consented_tenants(admin)[0]


def _healthy(admin: httpx.Client) -> Tenant:
    return consented_tenants(admin)[1]


def _fresh_for_entra(admin: httpx.Client) -> Tenant:
    return consented_tenants(admin)[2]


async def test_a_trickling_tenant_holds_only_its_own_places(
    bus: Client, fetcher: ServiceProcess, admin: httpx.Client
) -> None:
    slow, healthy = _trickling(admin), _healthy(admin)
    # A byte a second: every read gets data in time, only the request's deadline ends it.
    admin.put(f"/tenants/{slow.id}/faults", json={"kind": "trickle", "trickle_interval_seconds": 1}).raise_for_status()
    trickling = [refresh_of(slow) for _ in range(IN_HAND - 1)]
    # More healthy refreshes than places: the last ones can only start once an earlier
    # healthy one has ended, while the trickling ones are still in hand.
    healthy_refreshes = [refresh_of(healthy) for _ in range(IN_HAND)]

    def settled(outcomes: Outcomes) -> bool:
        return all(outcomes.of(RefreshFailed, r.refresh_id) for r in trickling) and all(
            snapshots_of_every_company(healthy, r)(outcomes) for r in healthy_refreshes
        )

    outcomes = await run_refreshes(bus, fetcher, [*trickling, *healthy_refreshes], done=settled)

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
    await assert_nothing_pending(bus)


async def test_a_refresh_past_its_deadline_ends_as_timeout(
    bus: Client, fetcher: ServiceProcess, admin: httpx.Client
) -> None:
    tenant = _healthy(admin)
    # Each request takes 10 s, within its own 14 s deadline (4 s to spare on a busy machine:
    # with 3, a discovery sometimes ran past it); discovery and then the companies' reads take
    # 20 s, past the refresh's 18 s.
    admin.put(f"/tenants/{tenant.id}/faults", json={"kind": "latency", "latency_ms": 10000}).raise_for_status()
    refresh = refresh_of(tenant)

    def settled(outcomes: Outcomes) -> bool:
        return {f.company_id for f in outcomes.of(RefreshFailed, refresh.refresh_id)} == tenant.companies

    outcomes = await run_refreshes(bus, fetcher, [refresh], done=settled)
    failed: list[RefreshFailed] = outcomes.of(RefreshFailed)
    assert len(failed) == len(tenant.companies)
    for failure in failed:
        assert failure.failure.kind is FailureKind.TIMEOUT
        assert "HUB_REFRESH_DEADLINE_SECONDS" in (failure.failure.message or "")
    deferred: list[RefreshDeferred] = outcomes.of(RefreshDeferred)
    assert {d.company_id for d in deferred} == tenant.companies, "each company said it would be read again"
    assert {d.attempt for d in deferred} == {1}
    assert not outcomes.of(CompanySnapshot)
    await assert_nothing_pending(bus)


async def test_a_retry_after_is_announced_before_the_next_try(
    bus: Client, fetcher: ServiceProcess, admin: httpx.Client
) -> None:
    tenant = _healthy(admin)
    fault = {"kind": "upgrading", "retry_after_seconds": 3, "count": 1}
    admin.put(f"/tenants/{tenant.id}/faults", json=fault).raise_for_status()
    refresh = refresh_of(tenant)
    outcomes = await run_refreshes(bus, fetcher, [refresh], done=snapshots_of_every_company(tenant, refresh))
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
    await assert_nothing_pending(bus)


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ({"kind": "repeated_next_link"}, "already read"),
        ({"kind": "duplicate_company_ids"}, "more than once"),
        ({"kind": "too_many_companies"}, "at most 1000 companies"),
    ],
)
async def test_answers_that_cannot_be_trusted_are_bad_responses_at_once(
    bus: Client, fetcher: ServiceProcess, admin: httpx.Client, fault: dict[str, Any], words: str
) -> None:
    tenant = _healthy(admin)
    admin.put(f"/tenants/{tenant.id}/faults", json=fault).raise_for_status()
    refresh = refresh_of(tenant)
    outcomes = await run_refreshes(bus, fetcher, [refresh], done=lambda o: bool(o.of(RefreshFailed)))
    [failed] = outcomes.of(RefreshFailed)
    assert failed.company_id is None
    assert failed.failure.kind is FailureKind.BAD_RESPONSE
    assert words in (failed.failure.message or "")
    assert not outcomes.of(RefreshDeferred), "a bad answer is not retried"
    assert not outcomes.of(CompaniesDiscovered)
    await assert_nothing_pending(bus)


async def test_entra_answering_not_json_is_a_bad_answer_from_entra(
    bus: Client, fetcher: ServiceProcess, admin: httpx.Client
) -> None:
    tenant = _fresh_for_entra(admin)
    admin.put(f"/tenants/{tenant.id}/faults", json={"kind": "entra_not_json"}).raise_for_status()
    refresh = refresh_of(tenant)
    outcomes = await run_refreshes(bus, fetcher, [refresh], done=lambda o: bool(o.of(RefreshFailed)))
    [failed] = outcomes.of(RefreshFailed)
    assert failed.failure.kind is FailureKind.BAD_RESPONSE, "not an unknown tenant"
    assert "Microsoft Entra ID" in failed.failure.summary
    assert failed.failure.http_status == 200
    assert "not JSON" in (failed.failure.message or "")
    await assert_nothing_pending(bus)


async def test_a_tenant_is_read_by_the_id_its_grant_names_not_by_its_domain(
    bus: Client, fetcher: ServiceProcess, admin: httpx.Client
) -> None:
    """The grant is checked by the tenant's id; the reads go to that id too. A domain that
    now names another tenant (moved, or a stale card) never leads the read elsewhere."""
    tenants = consented_tenants(admin)
    granted, elsewhere = tenants[1], tenants[2]
    refresh = RefreshRequested(
        refresh_id=uuid.uuid4(),
        client_id=uuid.uuid4(),
        connection=ClientConnection(tenant=elsewhere.domain, environment="Production", tenant_id=uuid.UUID(granted.id)),
    )
    outcomes = await run_refreshes(bus, fetcher, [refresh], done=snapshots_of_every_company(granted, refresh))
    read = {s.company_id for s in outcomes.of(CompanySnapshot, refresh.refresh_id)}
    assert read == granted.companies and not read & elsewhere.companies
    await assert_nothing_pending(bus)
