"""The hub's services with their operations endpoints on and traces sent to a test receiver.

This package runs its own nats-server (a test stops it to see readiness fail), the
registry, one fetcher, invitations and the gateway, each with an operations port of its
own, exactly as `hub up` and the container images run them, and every process exports its
spans over OTLP/HTTP to a receiver the test reads.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from hub_common.local_nats import LocalNatsServer, free_port
from hub_common.settings import HubSettings, Mode
from hub_gateway.auth import issue_dev_token
from tests.conftest import Sandbox
from tests.support.otlp import OtlpReceiver
from tests.support.processes import ServiceProcess, start_service, stop_all, wait_until_healthy

SECRET_KEY = "observability-secret-key-long-enough-for-hmac"
SERVICES = ("registry", "fetcher", "invitations", "gateway")


@dataclass
class ObservedHub:
    broker: LocalNatsServer
    sandbox: Sandbox
    url: str
    receiver: OtlpReceiver
    operations_ports: dict[str, int]
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def operations(self, service: str, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.operations_ports[service]}{path}", timeout=5)

    def metrics(self, service: str) -> Metrics:
        response = self.operations(service, "/metrics")
        response.raise_for_status()
        return Metrics(response.text)

    def client(self, email: str) -> httpx.Client:
        token = issue_dev_token(HubSettings(mode=Mode.DEV, secret_key=SecretStr(SECRET_KEY)), email)
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=20)

    def sandbox_admin(self) -> httpx.Client:
        return httpx.Client(base_url=f"{self.sandbox.base_url}/_sandbox", verify=self.sandbox.tls(), timeout=10)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()[-2500:]}" for p in self.processes.values())


class Metrics:
    """One scrape of a /metrics answer, parsed as Prometheus does."""

    def __init__(self, exposition: str) -> None:
        self.text = exposition
        self.families = list(text_string_to_metric_families(exposition))

    def value(self, sample_name: str, **labels: str) -> float:
        """The sample's value (0 when the series is not there yet)."""
        for family in self.families:
            for sample in family.samples:
                if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return 0.0

    def names(self) -> set[str]:
        """Every metric family and sample name exposed (``x`` and ``x_total``, ``x_bucket`` …)."""
        return {family.name for family in self.families} | {
            sample.name for family in self.families for sample in family.samples
        }


@pytest.fixture(scope="package")
def observed_hub(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObservedHub]:
    home = tmp_path_factory.mktemp("observed-hub")
    # A fixed port: after a restart every service must find the broker where it was.
    broker = LocalNatsServer(home / "nats", port=free_port()).start()
    receiver = OtlpReceiver().start()
    port = free_port()
    hub = ObservedHub(
        broker=broker,
        sandbox=sandbox,
        url=f"http://127.0.0.1:{port}",
        receiver=receiver,
        operations_ports={service: free_port() for service in SERVICES},
    )
    common = {
        "HUB_NATS_URL": broker.url,
        "HUB_MODE": "dev",
        "HUB_SECRET_KEY": SECRET_KEY,
        "HUB_PUBLIC_URL": hub.url,
        "HUB_TRACING_EXPORTER": "otlp",
        "HUB_OTLP_ENDPOINT": receiver.endpoint,
        "HUB_METRICS_SAMPLE_SECONDS": "0.5",
        # Spans leave each process within a fifth of a second, not the default five.
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        **sandbox.settings_environment(),
    }
    own: dict[str, dict[str, str]] = {
        "registry": {"HUB_DATABASE_URL": f"sqlite:///{home / 'registry.db'}", "HUB_SCHEDULED_REFRESH_SECONDS": "0"},
        "fetcher": {"HUB_HTTP_READ_TIMEOUT_SECONDS": "5"},
        "invitations": {"HUB_DATABASE_URL": f"sqlite:///{home / 'invitations.db'}", "HUB_SMTP_PORT": str(free_port())},
        "gateway": {"HUB_DATABASE_URL": f"sqlite:///{home / 'gateway.db'}", "HUB_PORT": str(port)},
    }
    try:
        for service in SERVICES:
            hub.processes[service] = start_service(
                service,
                service,
                {**common, **own[service], "HUB_OPERATIONS_PORT": str(hub.operations_ports[service])},
                home / "logs",
            )
        wait_until_healthy(f"{hub.url}/healthz", hub.processes["gateway"], timeout=90)
        for service in SERVICES:
            port_of = hub.operations_ports[service]
            wait_until_healthy(f"http://127.0.0.1:{port_of}/readyz", hub.processes[service], timeout=60)
        yield hub
    finally:
        try:
            stop_all(reversed(hub.processes.values()))
        finally:
            receiver.stop()
            broker.stop()


@pytest.fixture(scope="package")
def tenant(observed_hub: ObservedHub) -> dict[str, str]:
    """A sandbox tenant that consented, with its Production Client URL."""
    with observed_hub.sandbox_admin() as admin:
        tenants = admin.get("/tenants").raise_for_status().json()["tenants"]
    chosen = next(t for t in tenants if t["consented"])
    production = next(e for e in chosen["environments"] if e["name"] == "Production")
    return {"id": chosen["id"], "domain": chosen["domain"], "client_url": production["client_url"]}


def firm_email(purpose: str) -> str:
    return f"owner-{uuid.uuid4().hex[:8]}@{purpose}-observability.example"
