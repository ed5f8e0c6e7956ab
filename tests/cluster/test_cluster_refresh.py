"""The hub on a three-node JetStream cluster, streams at three replicas, two registries.

Refreshes of many companies run while the node leading the audit log is killed (and later
started again) and while the registry replica holding the lease is killed: every refresh
still ends in exactly one outcome per company, nothing lost, nothing doubled, and the
surviving registry takes over relaying and commands within seconds.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from hub_common.db import create_engine
from hub_common.leadership import current_holder
from hub_common.local_nats import LocalNatsCluster, LocalNatsServer, free_port
from hub_common.streams import EVENTS_STREAM
from hub_registry.app import LEASE_ROLE
from tests.conftest import Sandbox, fresh_postgres_database, running_sandbox
from tests.faults.conftest import FAST_DELIVERY, SECRET_KEY, FaultHub, GatewayDatabase, launch
from tests.faults.ledger import assert_every_refresh_ended_once, read_ledger, wait_until

pytestmark = pytest.mark.e2e

LEASE_SECONDS = 3
REGISTRIES = ["registry-1", "registry-2"]


@pytest.fixture(scope="module")
def cluster_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, int]]:
    """A sandbox of its own: enough tenants and companies, each BC answer a little slow."""
    gateway_port = free_port()
    extra = {"HUB_SANDBOX_TENANTS": "6", "HUB_SANDBOX_COMPANIES_PER_TENANT": "4", "HUB_SANDBOX_LATENCY_MS": "40"}
    with running_sandbox(
        tmp_path_factory.mktemp("cluster-sandbox"), f"http://127.0.0.1:{gateway_port}", extra
    ) as sandbox:
        yield sandbox, gateway_port


@pytest.fixture(scope="module")
def databases(tmp_path_factory: pytest.TempPathFactory, postgres_admin_url: str | None) -> Iterator[tuple[str, str]]:
    """The registries' shared database and the gateway's: PostgreSQL when configured."""
    home = tmp_path_factory.mktemp("cluster-databases")
    if postgres_admin_url is None:
        yield f"sqlite:///{home / 'registry.db'}", f"sqlite:///{home / 'gateway.db'}"
        return
    with (
        fresh_postgres_database(postgres_admin_url) as registry,
        fresh_postgres_database(postgres_admin_url) as gateway,
    ):
        yield registry, gateway


@pytest.fixture(scope="module")
def cluster_hub(
    nats_cluster: LocalNatsCluster,
    cluster_sandbox: tuple[Sandbox, int],
    databases: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FaultHub]:
    sandbox, port = cluster_sandbox
    registry_database, gateway_database = databases
    home = tmp_path_factory.mktemp("cluster-hub")
    hub = FaultHub(
        broker=nats_cluster.nodes[0],
        sandbox=sandbox,
        database=GatewayDatabase(gateway_database, None),
        url=f"http://127.0.0.1:{port}",
        environment={
            "HUB_NATS_URL": nats_cluster.url,
            "HUB_STREAM_REPLICAS": "3",
            "HUB_LEADER_LEASE_SECONDS": str(LEASE_SECONDS),
            "HUB_MODE": "dev",
            "HUB_SECRET_KEY": SECRET_KEY,
            "HUB_PUBLIC_URL": f"http://127.0.0.1:{port}",
            **sandbox.settings_environment(),
            **FAST_DELIVERY,
        },
        gateway_settings={"HUB_DATABASE_URL": gateway_database, "HUB_PORT": str(port)},
        logs_dir=home / "logs",
    )
    try:
        launch(hub, registries=REGISTRIES, registry_database_url=registry_database)
        yield hub
    finally:
        hub.stop_all()


@pytest.fixture
async def read_model(databases: tuple[str, str]) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(databases[1])
    yield engine
    await engine.dispose()


def _crash_of(log: str) -> str:
    """The traceback a process died with: where it began, not only its last lines."""
    began = log.rfind("Traceback")
    return log[max(0, began - 300) :][:12_000] if began >= 0 else log[-3000:]


def _node_named(cluster: LocalNatsCluster, server_name: str) -> LocalNatsServer:
    return next(node for node in cluster.nodes if f"hub-{node.port}" == server_name)


async def test_refreshes_survive_a_lost_node_and_a_lost_registry(
    cluster_hub: FaultHub, nats_cluster: LocalNatsCluster, cluster_connection: Client, read_model: AsyncEngine
) -> None:
    hub, js = cluster_hub, cluster_connection.jetstream()
    tenants = hub.tenants()
    firm, companies = await hub.onboard("cluster", tenants, js, read_model)
    assert sum(len(client_companies) for client_companies in companies.values()) >= 12, companies

    for tenant in tenants:
        hub.slow_down(tenant, latency_ms=400)
    first_round = hub.refresh(firm)

    async def under_way() -> bool:
        ledger = await read_ledger(js, firm.firm_id)
        return any(ledger.discovered[refresh_id] for refresh_id in first_round)

    await wait_until("the first round is under way", under_way, timeout=30, details=hub.logs)

    holder = await current_holder(js, LEASE_ROLE)
    assert holder is not None
    # The node leading the audit log dies mid-round: the others elect a new leader.
    leader = (await js.stream_info(EVENTS_STREAM)).cluster
    assert leader is not None and leader.leader is not None
    lost_node = _node_named(nats_cluster, leader.leader)
    lost_node.kill()

    # The registry replica that relays the outbox and holds the lease dies too.
    lost_registry = next(name for name in REGISTRIES if f":{hub.processes[name].process.pid}:" in holder)
    hub.processes[lost_registry].kill()
    survivor = next(name for name in REGISTRIES if name != lost_registry)

    async def survivor_leads() -> bool:
        now = await current_holder(js, LEASE_ROLE)
        return now is not None and f":{hub.processes[survivor].process.pid}:" in now

    await wait_until("the other registry takes the lease", survivor_leads, timeout=LEASE_SECONDS * 5, details=hub.logs)

    async def asked_anew() -> list[uuid.UUID]:
        """Refresh all, until the registry starts a refresh: a client whose last one has
        read nothing yet is answered with it instead (its refresh is on its way)."""
        started: list[uuid.UUID] = []

        async def asked() -> bool:
            started.extend(await asyncio.to_thread(hub.refresh, firm))
            return bool(started)

        await wait_until("the registry to start a refresh", asked, timeout=60, details=hub.logs)
        return started

    # Commands reach the surviving registry, and what it commits leaves through its relay.
    second_round = await asked_anew()

    lost_node.start()
    hub.clear_faults()
    third_round = await asked_anew()

    answered = (*first_round, *second_round, *third_round)
    ledger = await assert_every_refresh_ended_once(
        js, read_model, firm.firm_id, companies, timeout=150, answered=answered, details=hub.logs
    )
    for refresh_id in answered:
        assert ledger.requests_stored[refresh_id] == 1, (
            f"refresh {refresh_id} stored {ledger.requests_stored[refresh_id]} times"
        )

    # The restarted node caught up: it holds the whole audit log again.
    async def node_caught_up() -> bool:
        cluster = (await js.stream_info(EVENTS_STREAM)).cluster
        peers = (cluster.replicas or []) if cluster else []
        return len(peers) == 2 and all(peer.current for peer in peers)

    await wait_until("the restarted node is current", node_caught_up, timeout=60, details=hub.logs)
    for name, process in hub.processes.items():
        if name != lost_registry:
            assert process.process.poll() is None, f"{name} exited:\n{_crash_of(process.log())}"
