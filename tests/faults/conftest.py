"""The hub's real processes on a broker of their own, for tests that break things.

Unlike the other suites, this package runs its own nats-server, on a fixed port with a
JetStream file store, so a test can kill and restart it; and the gateway reaches its
database (PostgreSQL when one is configured) through a TCP proxy a test can cut. Every
process gets short delivery settings (ack wait, retry delays, BC slot leases), so a dead
worker's message moves on within seconds and the folder stays within a few minutes.

Each test signs up a firm of its own, so outcomes are counted per firm, never mixed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from hub_common.bus import connect
from hub_common.db import create_engine
from hub_common.local_nats import LocalNatsServer, free_port
from hub_common.settings import HubSettings, Mode
from hub_common.streams import Topology
from hub_gateway.auth import issue_dev_token
from tests.conftest import Sandbox, fresh_postgres_database
from tests.faults.ledger import Companies, assert_every_refresh_ended_once
from tests.faults.tcp_proxy import TcpProxy
from tests.support.connect import add_connected_client
from tests.support.processes import ServiceProcess, start_service, stop_all, wait_until_healthy

SECRET_KEY = "faults-secret-key-long-enough-for-hmac-sha256"
# The registry declares the consumers with these, and every other service pulls its own only
# as its settings say: every process gets the same values.
FAST_DELIVERY = {
    # A killed fetcher's refresh goes to another after 3 s without progress reports.
    "HUB_FETCHER_ACK_WAIT_SECONDS": "3",
    "HUB_PROJECTION_ACK_WAIT_SECONDS": "3",
    # Retries wait 0.2, 0.4, 0.8, 1, 1 … s: a projection gives an event up within ~2.5 s,
    # far shorter than the database outage the tests make.
    "HUB_PROJECTION_MAX_DELIVER": "4",
    "HUB_RETRY_DELAY_SECONDS": "0.2",
    "HUB_RETRY_MAX_DELAY_SECONDS": "1",
    # A killed fetcher's BC request slots come free after 8 s (longer than any request here).
    "HUB_BC_SLOT_LEASE_SECONDS": "8",
}
FETCHER_SETTINGS = {
    "HUB_HTTP_READ_TIMEOUT_SECONDS": "5",
    "HUB_MAX_RESPONSE_BYTES": "2000000",
}


@dataclass(frozen=True)
class Tenant:
    """A sandbox tenant that granted consent, with its Production companies."""

    id: str
    domain: str
    client_url: str
    companies: frozenset[uuid.UUID]


@dataclass
class GatewayDatabase:
    """Where the gateway keeps its read model: reached through ``proxy`` when there is one."""

    direct_url: str
    proxy: TcpProxy | None

    @property
    def service_url(self) -> str:
        if self.proxy is None:
            return self.direct_url
        return make_url(self.direct_url).set(host="127.0.0.1", port=self.proxy.port).render_as_string(False)


@dataclass
class Firm:
    """A firm signed up for one test, and its owner's API client."""

    firm_id: uuid.UUID
    email: str
    api: httpx.Client


@dataclass
class FaultHub:
    # The broker (in a cluster: the node) a test may kill and start again.
    broker: LocalNatsServer
    sandbox: Sandbox
    database: GatewayDatabase
    url: str
    environment: dict[str, str]
    # The gateway's own settings, for a test that restarts it.
    gateway_settings: dict[str, str]
    logs_dir: Path
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    # ------------------------------------------------------------ processes

    def start(self, name: str, command: str, extra: dict[str, str] | None = None) -> ServiceProcess:
        process = start_service(name, command, {**self.environment, **(extra or {})}, self.logs_dir)
        self.processes[name] = process
        return process

    def start_fetcher(self, name: str) -> ServiceProcess:
        return self.start(name, "fetcher", FETCHER_SETTINGS)

    def wait_until_ready(self, name: str, timeout: float = 60, said: str = '"fetcher ready"') -> None:
        """Until the process said it is ready (a fetcher: bound to its durable, BC client set up)."""
        process = self.processes[name]
        deadline = time.monotonic() + timeout
        while said not in process.log():
            if process.process.poll() is not None:
                raise AssertionError(f"{name} exited:\n{process.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} not ready within {timeout:.0f} s:\n{process.log()[-3000:]}")
            time.sleep(0.1)

    def topology(self) -> Topology:
        """The topology as the hub's registry declares it, with the hub's settings."""
        names = set(Topology.setting_names())
        given = {name.removeprefix("HUB_").lower(): value for name, value in self.environment.items() if name in names}
        return Topology.from_settings(HubSettings.model_validate(given))

    def fetchers(self) -> list[str]:
        return [name for name, p in self.processes.items() if name.startswith("fetcher") and p.process.poll() is None]

    def ensure_fetchers(self, count: int) -> None:
        """Back to ``count`` running fetchers, whatever a test stopped or killed."""
        index = 0
        while len(self.fetchers()) < count:
            index += 1
            name = f"fetcher-{index}"
            if name not in self.processes:  # a fresh name: a fresh log to find "ready" in
                self.start_fetcher(name)
                self.wait_until_ready(name)

    def assert_all_running(self) -> None:
        for process in self.processes.values():
            if process.process.poll() is None:
                continue
            if process.name.startswith("fetcher") and process.process.returncode in (-9, 0):
                continue  # killed or stopped by a test on purpose
            raise AssertionError(f"{process.name} exited ({process.process.returncode}):\n{process.log()[-3000:]}")

    def stop_all(self) -> None:
        stop_all(reversed(self.processes.values()))

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()[-2500:]}" for p in self.processes.values())

    # ------------------------------------------------------------ the API

    def client(self, email: str) -> httpx.Client:
        token = issue_dev_token(HubSettings(mode=Mode.DEV, secret_key=SecretStr(SECRET_KEY)), email)
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=20)

    def sign_up(self, purpose: str) -> Firm:
        """A new firm: the first request of a new address creates it, with its owner."""
        email = f"owner-{uuid.uuid4().hex[:8]}@{purpose}-faults.example"
        api = self.client(email)
        me = api.get("/api/v1/me")
        assert me.status_code == 200, me.text
        return Firm(uuid.UUID(me.json()["firm_id"]), email, api)

    def add_client(self, firm: Firm, tenant: Tenant) -> uuid.UUID:
        """A client whose tenant granted the firm access (Connect), so its refreshes read BC."""
        card = {"name": tenant.domain, "client_url": tenant.client_url}
        return uuid.UUID(add_connected_client(self.sandbox, firm.api, card))

    async def onboard(
        self, purpose: str, tenants: list[Tenant], js: JetStreamContext, read_model: AsyncEngine
    ) -> tuple[Firm, Companies]:
        """A new firm with a client per tenant, once each client's first refresh has ended."""
        firm = self.sign_up(purpose)
        companies = {self.add_client(firm, tenant): tenant.companies for tenant in tenants}
        await assert_every_refresh_ended_once(js, read_model, firm.firm_id, companies, timeout=60, details=self.logs)
        return firm, companies

    def refresh(self, firm: Firm, client_id: uuid.UUID | None = None) -> list[uuid.UUID]:
        body = {"client_id": str(client_id)} if client_id else {}
        response = firm.api.post("/api/v1/refresh", json=body)
        assert response.status_code == 202, response.text
        return [uuid.UUID(refresh_id) for refresh_id in response.json()["refresh_ids"]]

    def dashboard_states(self, firm: Firm) -> dict[uuid.UUID, str]:
        rows = firm.api.get("/api/v1/dashboard").raise_for_status().json()["rows"]
        return {uuid.UUID(row["company_id"]): row["state"] for row in rows if row.get("company_id")}

    # ------------------------------------------------------------ the sandbox

    def sandbox_admin(self) -> httpx.Client:
        return httpx.Client(base_url=f"{self.sandbox.base_url}/_sandbox", verify=self.sandbox.tls(), timeout=10)

    def slow_down(self, tenant: Tenant, latency_ms: int) -> None:
        with self.sandbox_admin() as admin:
            admin.put(
                f"/tenants/{tenant.id}/faults", json={"kind": "latency", "latency_ms": latency_ms}
            ).raise_for_status()

    def clear_faults(self) -> None:
        with self.sandbox_admin() as admin:
            admin.delete("/faults").raise_for_status()

    def tenants(self) -> list[Tenant]:
        with self.sandbox_admin() as admin:
            listed = admin.get("/tenants").raise_for_status().json()["tenants"]
        tenants = []
        for tenant in listed:
            if not tenant["consented"]:
                continue  # other suites use these as they are; this one needs working tenants
            production = next(e for e in tenant["environments"] if e["name"] == "Production")
            companies = frozenset(uuid.UUID(c["id"]) for c in production["companies"])
            tenants.append(Tenant(tenant["id"], tenant["domain"], production["client_url"], companies))
        return tenants


def launch(hub: FaultHub, *, registries: list[str], registry_database_url: str) -> None:
    """Start the hub's processes (registry replicas sharing one database), ready for work."""
    for name in registries:
        hub.start(name, "registry", {"HUB_DATABASE_URL": registry_database_url, "HUB_SCHEDULED_REFRESH_SECONDS": "0"})
    for name in registries:
        hub.wait_until_ready(name, timeout=90, said='"registry ready"')
    gateway = hub.start("gateway", "gateway", hub.gateway_settings)
    hub.start_fetcher("fetcher-1")
    hub.start_fetcher("fetcher-2")
    wait_until_healthy(f"{hub.url}/healthz", gateway, timeout=90)
    hub.ensure_fetchers(2)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="package")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNatsServer]:
    # A fixed port: after a restart every service must find the broker where it was.
    server = LocalNatsServer(tmp_path_factory.mktemp("faults-jetstream"), port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="package")
def gateway_database(
    tmp_path_factory: pytest.TempPathFactory, postgres_admin_url: str | None
) -> Iterator[GatewayDatabase]:
    if postgres_admin_url is None:
        yield GatewayDatabase(f"sqlite:///{tmp_path_factory.mktemp('faults-gateway') / 'gateway.db'}", None)
        return
    with fresh_postgres_database(postgres_admin_url) as url:
        server = make_url(url)
        proxy = TcpProxy(server.host or "127.0.0.1", server.port or 5432).start()
        try:
            yield GatewayDatabase(url, proxy)
        finally:
            proxy.stop()


@pytest.fixture(scope="package")
def fault_hub(
    broker: LocalNatsServer,
    sandbox: Sandbox,
    gateway_database: GatewayDatabase,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FaultHub]:
    home = tmp_path_factory.mktemp("faults-hub")
    port = free_port()
    hub = FaultHub(
        broker=broker,
        sandbox=sandbox,
        database=gateway_database,
        url=f"http://127.0.0.1:{port}",
        environment={
            "HUB_NATS_URL": broker.url,
            "HUB_MODE": "dev",
            "HUB_SECRET_KEY": SECRET_KEY,
            "HUB_PUBLIC_URL": f"http://127.0.0.1:{port}",
            **sandbox.settings_environment(),
            **FAST_DELIVERY,
        },
        gateway_settings={"HUB_DATABASE_URL": gateway_database.service_url, "HUB_PORT": str(port)},
        logs_dir=home / "logs",
    )
    try:
        launch(hub, registries=["registry"], registry_database_url=f"sqlite:///{home / 'registry.db'}")
        yield hub
    finally:
        hub.stop_all()


@pytest.fixture
async def hub(fault_hub: FaultHub) -> AsyncIterator[FaultHub]:
    """The package's hub, left as it was found: faults cleared, two fetchers running."""
    yield fault_hub
    fault_hub.clear_faults()
    if fault_hub.database.proxy is not None:
        fault_hub.database.proxy.restore()
    fault_hub.ensure_fetchers(2)


@pytest.fixture
async def bus(broker: LocalNatsServer) -> AsyncIterator[Client]:
    """The test's own connection, which outlives broker restarts like the services' do."""
    connection = await connect(broker.url, name="fault-test")
    yield connection
    await connection.close()


@pytest.fixture
async def read_model(gateway_database: GatewayDatabase) -> AsyncIterator[AsyncEngine]:
    """The gateway's database, reached directly (never through the proxy a test cuts)."""
    engine = create_engine(gateway_database.direct_url)
    yield engine
    await engine.dispose()
