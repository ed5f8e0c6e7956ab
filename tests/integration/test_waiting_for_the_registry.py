"""Services started before the registry, on a broker with no topology yet: each waits,
not ready and creating nothing, until the registry has declared it; and each stops at once
when asked to while it waits (a gateway waits inside uvicorn's start-up, which a signal
does not end by itself)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from hub_common.local_nats import LocalNatsServer, free_port
from tests.conftest import Sandbox, declare_as_the_registry
from tests.support.processes import ServiceProcess, start_service, stop_all, wait_until_healthy

SECRET_KEY = "waiting-for-the-registry-secret-key-long-enough"


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def _start(name: str, nats_url: str, sandbox: Sandbox, tmp_path: Path, port: int) -> ServiceProcess:
    environment = {
        **sandbox.settings_environment(),
        "HUB_NATS_URL": nats_url,
        "HUB_MODE": "dev",
        "HUB_SECRET_KEY": SECRET_KEY,
        "HUB_DATABASE_URL": f"sqlite:///{tmp_path / f'{name}.db'}",
        "HUB_SMTP_PORT": str(free_port()),
        "HUB_OPERATIONS_PORT": str(port),
        "HUB_PORT": str(free_port()),
    }
    return start_service(name, name, environment, tmp_path / "logs")


def _wait_for_log(service: ServiceProcess, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in service.log():
        assert service.process.poll() is None, f"{service.name} exited:\n{service.log()[-3000:]}"
        assert time.monotonic() < deadline, f"{service.name} never logged {text!r}:\n{service.log()[-3000:]}"
        time.sleep(0.1)


def test_services_wait_unready_for_the_registry_then_start(sandbox: Sandbox, tmp_path: Path) -> None:
    with LocalNatsServer(tmp_path / "nats") as broker:
        ports = {name: free_port() for name in ("fetcher", "invitations", "gateway")}
        services = [_start(name, broker.url, sandbox, tmp_path, port) for name, port in ports.items()]
        try:
            for service in services:
                _wait_for_log(service, "waiting for the registry to declare the topology")
            for name, port in ports.items():
                assert _status(f"http://127.0.0.1:{port}/readyz") != 200, name
            declare_as_the_registry(broker.url)
            for service in services:
                wait_until_healthy(f"http://127.0.0.1:{ports[service.name]}/readyz", service, timeout=30)
        finally:
            stop_all(services)


def test_a_waiting_service_stops_at_once_when_asked(sandbox: Sandbox, tmp_path: Path) -> None:
    with LocalNatsServer(tmp_path / "nats") as broker:
        for name in ("gateway", "fetcher", "invitations"):
            service = _start(name, broker.url, sandbox, tmp_path, free_port())
            _wait_for_log(service, "waiting for the registry to declare the topology")
            started = time.monotonic()
            service.stop(timeout=10)
            assert time.monotonic() - started < 5, f"{name} took {time.monotonic() - started:.1f} s to stop"
            # A stop, not a failed start (uvicorn's exit 3): ended by the SIGTERM it was sent (as
            # uvicorn ends once it has shut down) or exit 0, and no traceback for an operator.
            stopped = (0, -signal.SIGTERM)
            assert service.process.returncode in stopped, (service.process.returncode, service.log()[-3000:])
            assert "Traceback" not in service.log(), service.log()[-3000:]
