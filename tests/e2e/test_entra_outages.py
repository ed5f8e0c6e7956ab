"""Entra down or throttling the token request: the refresh is put off until when Entra
says, then done; never dead-lettered, never a permanent failure (a real fetcher process,
its own nats-server, the sandbox's Entra faults).

Each case reads a tenant of its own: a token the fetcher cached would spare it the
request the fault answers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from nats.aio.client import Client

from hub_common.events import FailureKind, RefreshDeferred, RefreshFailed
from hub_common.local_nats import LocalNatsServer
from tests.conftest import Sandbox
from tests.support.lone_fetcher import (
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
    with LocalNatsServer(tmp_path_factory.mktemp("entra-nats")) as server:
        yield server


@pytest.fixture(scope="module")
def fetcher(
    broker: LocalNatsServer, sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    process = start_lone_fetcher("fetcher-entra", broker, sandbox, tmp_path_factory.mktemp("entra-logs"))
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


@pytest.mark.parametrize(
    ("fault", "kind", "status", "tenant_index"),
    [
        # msal raises its own MsalServiceError for a 5xx; it escaped classification before.
        ("entra_unavailable", FailureKind.ENVIRONMENT_OFFLINE, 503, 0),
        # A 429 with Entra's JSON error was a permanent "bad response" before.
        ("entra_throttled", FailureKind.THROTTLED, 429, 1),
    ],
)
async def test_entra_down_or_throttling_puts_the_refresh_off_until_when_it_says(
    bus: Client,
    fetcher: ServiceProcess,
    admin: httpx.Client,
    fault: str,
    kind: FailureKind,
    status: int,
    tenant_index: int,
) -> None:
    tenant = consented_tenants(admin)[tenant_index]
    admin.put(f"/tenants/{tenant.id}/faults", json={"kind": fault, "retry_after_seconds": 3, "count": 1})
    refresh = refresh_of(tenant)
    outcomes = await run_refreshes(bus, fetcher, [refresh], done=snapshots_of_every_company(tenant, refresh))
    [deferred] = outcomes.of(RefreshDeferred)
    assert (deferred.attempt, deferred.company_id) == (1, None)
    assert deferred.failure.kind is kind
    assert deferred.failure.http_status == status
    assert "Microsoft Entra ID" in deferred.failure.summary
    waited = (deferred.next_attempt_at - deferred.failure.occurred_at).total_seconds()
    assert 3 <= waited < 10, "the next try is when Retry-After said"
    assert not outcomes.of(RefreshFailed)
    await assert_nothing_pending(bus)
