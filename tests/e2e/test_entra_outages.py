"""Entra down or throttling the token request: the refresh is put off until when Entra
says, then done; never dead-lettered, never a permanent failure (a real fetcher process,
its own nats-server, the sandbox's Entra faults).

Each case reads a tenant of its own: a token the fetcher cached would spare it the
request the fault answers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import nats
import pytest
from nats.aio.client import Client

from hub_common.events import FailureKind, RefreshDeferred, RefreshFailed
from hub_common.local_nats import LocalNatsServer
from hub_common.streams import declare_topology
from tests.conftest import Sandbox
from tests.e2e.test_fetcher_deadlines import (
    FETCHER_SETTINGS,
    _assert_nothing_pending,
    _consented_tenants,
    _refresh,
    _run,
    _snapshots_of_every_company,
    _wait_until_ready,
)
from tests.support.processes import ServiceProcess, start_service

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNatsServer]:
    with LocalNatsServer(tmp_path_factory.mktemp("entra-nats")) as server:
        yield server


@pytest.fixture(scope="module")
def fetcher(
    broker: LocalNatsServer, sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    environment = {"HUB_NATS_URL": broker.url, **sandbox.settings_environment(), **FETCHER_SETTINGS}
    process = start_service("fetcher-entra", "fetcher", environment, tmp_path_factory.mktemp("entra-logs"))
    _wait_until_ready(process)
    yield process
    process.stop()


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
    tenant = _consented_tenants(admin)[tenant_index]
    admin.put(f"/tenants/{tenant.id}/faults", json={"kind": fault, "retry_after_seconds": 3, "count": 1})
    refresh = _refresh(tenant)
    outcomes = await _run(bus, fetcher, [refresh], done=_snapshots_of_every_company(tenant, refresh))
    [deferred] = outcomes.of(RefreshDeferred)
    assert (deferred.attempt, deferred.company_id) == (1, None)
    assert deferred.failure.kind is kind
    assert deferred.failure.http_status == status
    assert "Microsoft Entra ID" in deferred.failure.summary
    waited = (deferred.next_attempt_at - deferred.failure.occurred_at).total_seconds()
    assert 3 <= waited < 10, "the next try is when Retry-After said"
    assert not outcomes.of(RefreshFailed)
    await _assert_nothing_pending(bus)
