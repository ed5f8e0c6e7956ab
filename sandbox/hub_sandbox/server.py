"""Serving the sandbox over HTTPS: blocking (``run``) or in a background thread (tests)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from hub_common.logging import configure_logging, get_logger
from hub_sandbox.app import create_app
from hub_sandbox.certificates import CertificatePaths, ensure_certificates
from hub_sandbox.settings import SandboxSettings

log = get_logger(__name__)

STARTUP_TIMEOUT_SECONDS = 15.0
SHUTDOWN_GRACE_SECONDS = 2


@dataclass(frozen=True)
class RunningSandbox:
    """Where a started sandbox answers and what a client must trust."""

    base_url: str  # https://127.0.0.1:{port}
    port: int
    certificates: CertificatePaths
    settings: SandboxSettings

    @property
    def ca_pem(self) -> str:
        return str(self.certificates.ca_pem)

    @property
    def web_client_base(self) -> str:
        return f"{self.base_url}/bc"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting the sandbox's CA (for ``httpx.Client(verify=...)``)."""
        return ssl.create_default_context(cafile=self.ca_pem)

    def authority(self, tenant: str) -> str:
        """The msal authority for a tenant (GUID or domain)."""
        return f"{self.base_url}/{tenant}"


def run(settings: SandboxSettings) -> None:
    """Serve the sandbox over HTTPS until interrupted (Ctrl-C or SIGTERM)."""
    configure_logging(settings)
    server, listener, running = _prepare(settings)
    log.info(
        "sandbox listening",
        url=running.base_url,
        ca=running.ca_pem,
        tenants=settings.sandbox_tenants,
        web_client=running.web_client_base,
    )
    server.run(sockets=[listener])


@contextmanager
def serve_in_background(settings: SandboxSettings) -> Iterator[RunningSandbox]:
    """Run the sandbox in a daemon thread for the duration of the block.

    Use ``sandbox_port=0`` to get a free port. Logging is left as the caller set it.
    """
    server, listener, running = _prepare(settings)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, name="hub-sandbox", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            listener.close()
            raise RuntimeError("the sandbox did not start")
        time.sleep(0.02)
    try:
        yield running
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT_SECONDS)
        listener.close()


def _prepare(settings: SandboxSettings) -> tuple[uvicorn.Server, socket.socket, RunningSandbox]:
    certificates = ensure_certificates(settings.sandbox_state_dir, settings.extra_certificate_names)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        ssl_certfile=str(certificates.cert_chain_pem),
        ssl_keyfile=str(certificates.private_key_pem),
        # The hub's structlog set-up (or the caller's) handles uvicorn's loggers.
        log_config=None,
        access_log=False,
        # The lifespan starts and stops the webhook delivery task and its HTTP client.
        lifespan="on",
        server_header=False,
        # The app writes Date from the sandbox clock (ClockDateHeader).
        date_header=False,
        # Faults hold answers back on purpose; a stopping sandbox has nothing to finish.
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )
    listener = _bind(settings.sandbox_host, settings.sandbox_port)
    port = int(listener.getsockname()[1])
    host = f"[{settings.sandbox_host}]" if ":" in settings.sandbox_host else settings.sandbox_host
    running = RunningSandbox(
        base_url=f"https://{host}:{port}",
        port=port,
        certificates=certificates,
        settings=settings,
    )
    return uvicorn.Server(config), listener, running


def _bind(host: str, port: int) -> socket.socket:
    """Bind before serving, so port 0 resolves to a known free port up front."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(128)
    listener.set_inheritable(True)
    return listener


def main() -> None:
    run(SandboxSettings())
