"""`hub up`: the whole hub as one process tree, with nothing left behind on exit.

Children are plain ``hub <service>`` processes configured by environment, exactly as a
container would run them. Every child asks the kernel to SIGTERM it if the supervisor
dies (PR_SET_PDEATHSIG), and the supervisor does the same towards whoever started it,
so even a killed `make` leaves no worker or nats-server behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO

from hub_common import nats_permissions
from hub_common.change_notifications import NOTIFICATION_PATH
from hub_common.local_nats import LocalNatsServer, die_with_parent, free_port, wait_for_port
from hub_common.private_files import write_private
from hub_common.streams import Topology

TRACING_SETTINGS = ("HUB_TRACING_EXPORTER", "HUB_OTLP_ENDPOINT")

# How long each service gets to finish after SIGTERM (its refreshes in hand, its outbox).
STOP_GRACE_SECONDS = 15.0
SANDBOX_SAMPLE_TENANT = "cronus-sample.onmicrosoft.com"
DEV_ACCOUNTANT = "dev@contoso-accounting.example"


@dataclass
class DevSecrets:
    """Secrets `hub up` makes once and keeps under .hub/, so restarts keep sessions valid."""

    client_id: str
    client_secret: str
    secret_key: str

    @classmethod
    def load_or_create(cls, path: Path) -> DevSecrets:
        if path.exists():
            return cls(**json.loads(path.read_text()))
        created = cls(
            client_id=str(uuid.uuid4()),
            client_secret=secrets.token_urlsafe(32),
            secret_key=secrets.token_urlsafe(48),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, json.dumps(created.__dict__))
        return created


def nats_password_files(directory: Path) -> dict[str, Path]:
    """One password file per NATS user (each service, and the operator), made once and kept,
    readable by this user only."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for user in nats_permissions.USERS:
        files[user] = directory / user
        if not files[user].exists():
            write_private(files[user], secrets.token_urlsafe(32))
    return files


@dataclass
class Child:
    name: str
    arguments: list[str]
    environment: dict[str, str]
    process: subprocess.Popen[bytes] | None = None


@dataclass
class Supervisor:
    home: Path
    fetchers: int = 2
    gateway_port: int = 8000
    sandbox_port: int = 8443
    nats_port: int = 0
    # The dev SMTP sink that catches invitation mail; 0 picks a free port at start.
    smtp_sink_port: int = 0
    # Each service's operations endpoint (/livez, /readyz, /metrics) on a free port of its own.
    operations: bool = True
    operations_ports: dict[str, int] = field(default_factory=dict)
    children: list[Child] = field(default_factory=list)
    nats: LocalNatsServer | None = None
    # Each service signs in to NATS as its own user, as in production (hub_common.nats_permissions).
    nats_passwords: dict[str, Path] = field(default_factory=dict)
    stopping: bool = False
    # Held for as long as this supervisor lives (_hold_home).
    _home_lock: TextIO | None = field(default=None, init=False, repr=False)

    def _base_environment(self, secrets_: DevSecrets, nats_url: str) -> dict[str, str]:
        sandbox = f"https://127.0.0.1:{self.sandbox_port}"
        environment = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
        # Retention and delivery settings are passed on as given: every process reconciles the
        # streams and consumers with them, so every process must see the same values.
        environment.update({name: os.environ[name] for name in Topology.setting_names() if name in os.environ})
        # So are the tracing settings: every process exports to the same place, or none does.
        environment.update({name: os.environ[name] for name in TRACING_SETTINGS if name in os.environ})
        environment.update(
            {
                "HUB_MODE": "dev",
                "HUB_NATS_URL": nats_url,
                "HUB_ENTRA_AUTHORITY": sandbox,
                "HUB_BC_API": sandbox,
                "HUB_BC_WEB_CLIENT": f"{sandbox}/bc",
                "HUB_CA_BUNDLE": str(self.home / "sandbox" / "ca.pem"),
                "HUB_ENTRA_CLIENT_ID": secrets_.client_id,
                "HUB_ENTRA_CLIENT_SECRET": secrets_.client_secret,
                "HUB_SECRET_KEY": secrets_.secret_key,
                # The sandbox posts Business Central's change notices to the gateway.
                "HUB_NOTIFICATION_URL": f"http://127.0.0.1:{self.gateway_port}{NOTIFICATION_PATH}",
            }
        )
        return environment

    def _plan(self, secrets_: DevSecrets, nats_url: str) -> list[Child]:
        base = self._base_environment(secrets_, nats_url)
        hub = [sys.executable, "-m", "hub_cli"]

        def child(name: str, command: str, **extra: str) -> Child:
            return Child(name, [*hub, command], {**base, **extra})

        def service(name: str, command: str, **extra: str) -> Child:
            extra["HUB_NATS_USER"] = command
            extra["HUB_NATS_PASSWORD_FILE"] = str(self.nats_passwords[command])
            if self.operations:
                self.operations_ports[name] = free_port()
                extra["HUB_OPERATIONS_PORT"] = str(self.operations_ports[name])
            return child(name, command, **extra)

        sandbox_web = f"https://127.0.0.1:{self.sandbox_port}/bc"
        plan = [
            child(
                "sandbox",
                "sandbox",
                HUB_SANDBOX_PORT=str(self.sandbox_port),
                HUB_SANDBOX_STATE_DIR=str(self.home / "sandbox"),
                # The client admin's "Invite External Accountant" page calls the gateway.
                HUB_SANDBOX_HUB_URL=f"http://127.0.0.1:{self.gateway_port}",
            ),
            child(
                "smtp-sink",
                "smtp-sink",
                HUB_SMTP_SINK_PORT=str(self.smtp_sink_port),
                HUB_SMTP_SINK_DIR=str(self.home / "mail"),
            ),
            service(
                "registry",
                "registry",
                HUB_DATABASE_URL=f"sqlite:///{self.home / 'registry.db'}",
                HUB_SAMPLE_CLIENT_URL=f"{sandbox_web}/{SANDBOX_SAMPLE_TENANT}/Production",
                # A developer's alert webhooks may go to a receiver on this machine.
                HUB_ALERT_WEBHOOK_ALLOW_LOOPBACK="true",
            ),
        ]
        plan += [service(f"fetcher-{index + 1}", "fetcher") for index in range(self.fetchers)]
        plan += [
            service(
                "invitations",
                "invitations",
                HUB_DATABASE_URL=f"sqlite:///{self.home / 'invitations.db'}",
                HUB_PUBLIC_URL=f"http://127.0.0.1:{self.gateway_port}",
                HUB_SMTP_HOST="127.0.0.1",
                HUB_SMTP_PORT=str(self.smtp_sink_port),
            ),
            service(
                "gateway",
                "gateway",
                HUB_DATABASE_URL=f"sqlite:///{self.home / 'gateway.db'}",
                HUB_PORT=str(self.gateway_port),
                # The dev mail page reads what the SMTP sink caught.
                HUB_SMTP_SINK_DIR=str(self.home / "mail"),
                HUB_PUBLIC_URL=f"http://127.0.0.1:{self.gateway_port}",
            ),
        ]
        return plan

    def metrics_urls(self) -> dict[str, str]:
        """Where each service's metrics are (empty when the operations endpoints are off)."""
        return {name: f"http://127.0.0.1:{port}/metrics" for name, port in self.operations_ports.items()}

    def _start(self, child: Child) -> None:
        log_path = self.home / "logs" / f"{child.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = log_path.open("ab")
        child.process = subprocess.Popen(
            child.arguments,
            env=child.environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        log.close()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def stop(self) -> None:
        """SIGTERM every child, give them time to finish, then make sure they are gone."""
        for child in reversed(self.children):
            if child.process is not None and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
                # Said out loud: a service that needs killing would also outlive a
                # container's grace period and lose what it was finishing.
                print(
                    f"hub up: {child.name} did not stop within {STOP_GRACE_SECONDS:.0f} s of SIGTERM and was killed; "
                    f"see {self.home / 'logs' / (child.name + '.log')}",
                    file=sys.stderr,
                )
        if self.nats is not None:
            self.nats.stop()

    def _wait_until_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.gateway_port}/healthz"
        while time.monotonic() < deadline and not self.stopping:
            self._check_children()
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.5)
        return False

    def _check_children(self) -> None:
        for child in self.children:
            if child.process is not None and child.process.poll() is not None:
                raise RuntimeError(
                    f"{child.name} exited with code {child.process.returncode}; "
                    f"see {self.home / 'logs' / (child.name + '.log')}"
                )
        # The broker too: without it every service would only reconnect, forever.
        broker = self.nats.process if self.nats is not None else None
        if broker is not None and broker.poll() is not None:
            raise RuntimeError(
                f"nats-server exited with code {broker.returncode}; see {self.home / 'nats' / 'nats-server.log'}"
            )

    def _hold_home(self) -> None:
        """One `hub up` per home: a second broker on the same store would corrupt it. The
        lock goes with the process, however it ends."""
        self._home_lock = (self.home / "hub-up.lock").open("w")
        try:
            fcntl.flock(self._home_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise RuntimeError(
                f"another `hub up` is running on {self.home}: stop it first, or give this one another --home"
            ) from error

    def run(self, on_ready: Callable[[DevSecrets], None]) -> int:
        die_with_parent()
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        self.home.mkdir(parents=True, exist_ok=True)
        try:
            self._hold_home()
            secrets_ = DevSecrets.load_or_create(self.home / "dev-secrets.json")
            self.nats_passwords = nats_password_files(self.home / "nats-users")
            passwords = {user: path.read_text() for user, path in self.nats_passwords.items()}
            self.nats = LocalNatsServer(
                self.home / "nats",
                port=self.nats_port,
                config=nats_permissions.authorization_conf(passwords),
                stops_with_parent=True,
            ).start()
            if not self.smtp_sink_port:
                self.smtp_sink_port = free_port()
            self.children = self._plan(secrets_, self.nats.url)
            sandbox, smtp_sink, *services = self.children
            self._start(sandbox)
            self._start(smtp_sink)
            if not wait_for_port("127.0.0.1", self.sandbox_port, 60):
                self._check_children()
                raise RuntimeError("the sandbox did not start listening")
            if not wait_for_port("127.0.0.1", self.smtp_sink_port, 30):
                self._check_children()
                raise RuntimeError("the SMTP sink did not start listening")
            fetchers = [child for child in services if child.name.startswith("fetcher-")]
            for child in services:
                if not child.name.startswith("fetcher-"):
                    self._start(child)
            if not self._wait_until_ready(120):
                if self.stopping:
                    return 0
                raise RuntimeError("the gateway did not become healthy within two minutes")
            # Only now: the refreshes the registry finds overdue as it starts subscribe each
            # company to BC's change notices, whose handshake BC sends to the gateway.
            for child in fetchers:
                self._start(child)
            on_ready(secrets_)
            while not self.stopping:
                self._check_children()
                time.sleep(0.5)
            return 0
        except RuntimeError as error:
            print(f"hub up: {error}", file=sys.stderr)
            return 1
        finally:
            self.stop()
