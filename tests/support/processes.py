"""Starting the hub's real processes for tests, exactly as `hub up` and containers do."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from hub_common.local_nats import terminate


@dataclass
class ServiceProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, as a container runtime does; a service still running after ``timeout``
        is killed and the test fails, since in production it would lose what it was finishing."""
        if self.process.poll() is not None:
            return
        terminate(self.process, timeout)
        if self.process.returncode == -signal.SIGKILL:
            raise AssertionError(f"{self.name} did not stop within {timeout:.0f} s of SIGTERM:\n{self.log()[-3000:]}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# Outside dev mode the gateway and invitations refuse the public default key.
TEST_SECRET_KEY = secrets.token_urlsafe(48)


def hub_environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """The parent's environment without any HUB_ setting, plus the test's own."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
    environment.update({"HUB_MODE": "test", "HUB_LOG_FORMAT": "json", "HUB_SECRET_KEY": TEST_SECRET_KEY})
    environment.update(overrides)
    return environment


def start_service(name: str, command: str, environment: Mapping[str, str], log_dir: Path) -> ServiceProcess:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "hub_cli", command],
            env=hub_environment(environment),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return ServiceProcess(name, process, log_path)


def wait_until_healthy(url: str, service: ServiceProcess, *, verify: str | bool = True, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"{service.name} exited early:\n{service.log()[-4000:]}")
        try:
            if httpx.get(url, timeout=2, verify=verify).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{service.name} not healthy at {url}:\n{service.log()[-4000:]}")


def stop_all(processes: Iterable[ServiceProcess]) -> None:
    """Stop each in turn (as given); every one is stopped even if an earlier one had to be killed."""
    failures: list[str] = []
    for service in processes:
        try:
            service.stop()
        except AssertionError as failure:
            failures.append(str(failure))
    if failures:
        raise AssertionError("\n\n".join(failures))
