"""`hub up` (what `make run` starts): the sample client's row is served, a second start
keeps the data, and SIGINT or SIGTERM leaves no process of the tree behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from hub_common.local_nats import free_port

pytestmark = pytest.mark.e2e


@dataclass
class RunningHub:
    process: subprocess.Popen[str]
    url: str
    token: str
    output: str


def _descendants(pid: int) -> set[int]:
    children: set[int] = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        parent = re.search(r"^PPid:\s+(\d+)", text, re.MULTILINE)
        if parent and int(parent.group(1)) == pid:
            child = int(status.parent.name)
            children |= {child} | _descendants(child)
    return children


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        status = Path(f"/proc/{pid}/status")
        if status.exists() and "State:\tZ" not in status.read_text():
            alive.add(pid)
    return alive


def _start(home: Path, port: int, sandbox_port: int) -> RunningHub:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hub_cli",
            "up",
            "--home",
            str(home),
            "--port",
            str(port),
            "--sandbox-port",
            str(sandbox_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
    )
    assert process.stdout is not None
    output = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        output += line
        if "Press Ctrl-C to stop." in line:
            token = re.search(r"API token:\s+(\S+)", output)
            assert token, output
            return RunningHub(process, f"http://127.0.0.1:{port}", token.group(1), output)
    process.kill()
    raise AssertionError(f"hub up did not become ready:\n{output}")


def _wait_for_sample_rows(hub: RunningHub) -> list[dict[str, object]]:
    headers = {"Authorization": f"Bearer {hub.token}"}
    deadline = time.monotonic() + 60
    rows: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        rows = httpx.get(f"{hub.url}/api/v1/dashboard", headers=headers, timeout=10).json()["rows"]
        if rows and all(row["state"] == "ok" for row in rows):
            return rows
        time.sleep(0.5)
    raise AssertionError(f"sample client rows never became ok: {json.dumps(rows)[:2000]}")


def _stop(hub: RunningHub, signum: int) -> None:
    tree = _descendants(hub.process.pid)
    assert len(tree) >= 7, "nats-server, sandbox, registry, 2 fetchers, invitations and gateway"
    hub.process.send_signal(signum)
    hub.process.wait(timeout=60)
    deadline = time.monotonic() + 10
    while _alive(tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(tree), f"left behind: {_alive(tree)}"
    assert hub.process.stdout is not None
    # Every service finished on its own; one killed after the grace would lose its work.
    said_on_stop = hub.process.stdout.read()
    assert "was killed" not in said_on_stop, said_on_stop


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / ".hub"


def test_hub_up_serves_the_sample_client_and_stops_cleanly(home: Path) -> None:
    port, sandbox_port = free_port(), free_port()
    first = _start(home, port, sandbox_port)
    try:
        assert httpx.get(f"{first.url}/healthz", timeout=5).json()["status"] == "ok"
        rows = _wait_for_sample_rows(first)
        assert {row["client_name"] for row in rows} == {"Sample client (CRONUS)"}
        assert {row["company_name"] for row in rows} == {"CRONUS UK Ltd.", "CRONUS USA, Inc."}
        # Every service serves its metrics on a port of its own, as printed.
        printed = dict(re.findall(r"Metrics:\s+(\S+)\s+(\S+)", first.output))
        assert set(printed) == {"registry", "fetcher-1", "fetcher-2", "invitations", "gateway"}, first.output
        assert len({urlsplit(url).port for url in printed.values()}) == len(printed)
        for url in printed.values():
            assert "# TYPE hub_consumer_lag_messages gauge" in httpx.get(url, timeout=5).text
    finally:
        _stop(first, signal.SIGINT)

    # A second start reuses the home folder: same secrets, same firm, the rows are still there.
    second = _start(home, port, sandbox_port)
    try:
        # The dev secrets are kept, so a token from the first run still signs in.
        headers = {"Authorization": f"Bearer {first.token}"}
        rows_again = httpx.get(f"{second.url}/api/v1/dashboard", headers=headers, timeout=10).json()["rows"]
        assert {row["company_id"] for row in rows_again} == {row["company_id"] for row in rows}
        assert len(rows_again) == len(rows), "the sample client is not added twice"
    finally:
        _stop(second, signal.SIGTERM)


def _nats_server_of(tree: set[int]) -> int:
    return next(pid for pid in tree if b"nats-server" in Path(f"/proc/{pid}/cmdline").read_bytes())


def test_a_second_hub_up_on_one_home_is_refused_and_a_killed_supervisor_leaves_nothing(home: Path) -> None:
    """Two brokers on one store would corrupt it: a second `hub up` on the same home stops
    at once, saying why. A supervisor killed outright (SIGKILL, the OOM killer) takes its
    whole tree with it, the broker included."""
    hub = _start(home, free_port(), free_port())
    tree = _descendants(hub.process.pid)
    try:
        environment = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
        arguments = ["up", "--home", str(home), "--port", str(free_port()), "--sandbox-port", str(free_port())]
        second = subprocess.run(
            [sys.executable, "-m", "hub_cli", *arguments],
            capture_output=True,
            text=True,
            env=environment,
            timeout=60,
        )
        assert second.returncode == 1, second.stdout + second.stderr
        assert "another `hub up` is running on" in second.stderr
        assert httpx.get(f"{hub.url}/healthz", timeout=5).json()["status"] == "ok", "the first one is untouched"
    finally:
        hub.process.kill()
        hub.process.wait(timeout=10)
    deadline = time.monotonic() + 30
    while _alive(tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(tree), f"left behind: {_alive(tree)}"


def test_a_broker_that_dies_stops_hub_up_saying_so(home: Path) -> None:
    hub = _start(home, free_port(), free_port())
    tree = _descendants(hub.process.pid)
    os.kill(_nats_server_of(tree), signal.SIGKILL)
    assert hub.process.wait(timeout=60) == 1
    assert hub.process.stdout is not None
    said = hub.process.stdout.read()
    assert "nats-server exited" in said, said
    deadline = time.monotonic() + 30
    while _alive(tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(tree), f"left behind: {_alive(tree)}"
