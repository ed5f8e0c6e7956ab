"""Refresh benchmark: how fast do F real fetcher processes refresh T tenants × N companies?

    python -m bench.refresh --tenants T --companies-per-tenant N --latency-ms L --fetchers F

It starts a real nats-server, the sandbox (``hub sandbox``) and F fetchers (``hub fetcher``)
exactly as ``hub up`` and the e2e tests do, grants consent in every sandbox tenant, publishes
one ``RefreshRequested`` per tenant and waits until every company has a ``CompanySnapshot``
or a ``RefreshFailed``. A gateway projects the run as it goes, so the read model's lag
(snapshot stored -> row updated) is measured too, and at the end ``bench.replay`` measures
``hub rebuild`` next to raw nats-py consumption of the same streams. It prints a table and
writes ``bench/results/refresh-<params>.json``.
Every child process is stopped on exit, on Ctrl-C and on SIGTERM. See bench/README.md for
what each number means and the lower bound it is compared with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import secrets
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import nats
from nats.aio.msg import Msg
from sqlmodel import col, select

from bench.replay import measure as measure_replay
from hub_common import grants
from hub_common.bus import publish_event
from hub_common.db import create_engine, session_factory, transaction
from hub_common.events import (
    Actor,
    ActorKind,
    ClientAdded,
    ClientCard,
    ClientConnection,
    ClientSource,
    CompaniesDiscovered,
    CompanySnapshot,
    GrantMethod,
    RefreshDeferred,
    RefreshFailed,
    RefreshRequested,
    TenantAccessGranted,
    decode_event,
    new_envelope,
)
from hub_common.local_nats import LocalNatsServer, die_with_parent, free_port, terminate
from hub_common.logging import configure_logging
from hub_common.settings import HubSettings
from hub_common.streams import (
    EVENTS_STREAM,
    GATEWAY_EVENTS_CONSUMER,
    GATEWAY_SNAPSHOTS_CONSUMER,
    SNAPSHOTS_STREAM,
    declare_topology,
)
from hub_fetcher.settings import FetcherSettings
from hub_gateway.accounts.store import create_api_token
from hub_gateway.auth import Principal
from hub_gateway.readmodel.models import CompanyRow

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
PROBE_DIR = BENCH_DIR / "probe"
RESULTS_DIR = BENCH_DIR / "results"
ENVIRONMENT = "Production"
FIRM_ID = uuid.UUID("b0e5c4a1-7e57-4b3e-9f00-000000000001")
BENCH_ACTOR = Actor.service("bench")
# BC's limits per identity and tenant (architecture, invariant 7).
BC_MAX_CONCURRENT = 5
BC_WINDOW_REQUESTS = 6000
BC_WINDOW_SECONDS = 300.0


@dataclass(frozen=True)
class Params:
    tenants: int
    companies_per_tenant: int
    latency_ms: int
    fetchers: int
    fetcher_concurrency: int
    timeout_seconds: float
    trace: bool
    gateway: bool = True
    replay: bool = True
    # The sandbox serves each answer from memory after computing it once (its CPU per
    # answer then no longer bounds the run); BC's limits and the latency still hold.
    memoized_sandbox: bool = False
    # Refresh every tenant once, unmeasured, before the measured round (caches, tokens).
    warm_up: bool = False
    # This share of the tenants answer a byte at a time (the sandbox's trickle fault) in the
    # measured round; the makespan is the other tenants'.
    trickling_percent: float = 0.0

    @property
    def slug(self) -> str:
        slug = f"t{self.tenants}-c{self.companies_per_tenant}-l{self.latency_ms}-f{self.fetchers}"
        if self.memoized_sandbox:
            slug += "-memo"
        if self.trickling_percent:
            slug += f"-trickle{self.trickling_percent:g}"
        return slug


# ------------------------------------------------------------------ processes


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Processes:
    """Every process the benchmark starts; ``stop`` ends them all (children first)."""

    workdir: Path
    nats: LocalNatsServer | None = None
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, command: str, environment: Mapping[str, str]) -> Child:
        log_path = self.workdir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "hub_cli", command],
                env=dict(environment),
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,  # no threads run yet
            )
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def check_alive(self) -> None:
        for child in self.children:
            if child.process.poll() is not None:
                raise RuntimeError(f"{child.name} exited ({child.process.returncode}):\n{child.log()[-3000:]}")

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        for child in reversed(self.children):
            terminate(child.process, timeout=15)
        if self.nats is not None:
            self.nats.stop()


# One key for every process of a run, as one installation would have.
_SECRET_KEY = secrets.token_urlsafe(48)


def child_environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """The parent's environment without any HUB_ setting, plus the benchmark's own."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
    environment.update({"HUB_MODE": "test", "HUB_LOG_FORMAT": "json"})
    # Outside dev mode a service that signs anything refuses the public default key.
    environment.setdefault("HUB_SECRET_KEY", _SECRET_KEY)
    environment.update(overrides)
    return environment


def proc_status_kib(pid: int, key: str) -> int | None:
    """A ``kB`` line of /proc/<pid>/status, such as VmHWM (peak resident memory)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used so far (threads included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def wait_for(condition_name: str, check: Any, processes: Processes, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processes.check_alive()
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{condition_name} not reached within {timeout:.0f} s")


# ------------------------------------------------------------------ sandbox


@dataclass(frozen=True)
class Tenant:
    id: str
    domain: str
    companies: tuple[str, ...]  # company ids of the Production environment
    bc_major: int  # 29 publishes the cue services, 30 does not


@dataclass(frozen=True)
class Sandbox:
    base_url: str
    ca_bundle: Path
    client_id: str
    client_secret: str

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, verify=ssl.create_default_context(cafile=str(self.ca_bundle)))

    def hub_environment(self) -> dict[str, str]:
        return {
            "HUB_ENTRA_AUTHORITY": self.base_url,
            "HUB_BC_API": self.base_url,
            "HUB_BC_WEB_CLIENT": f"{self.base_url}/bc",
            "HUB_CA_BUNDLE": str(self.ca_bundle),
            "HUB_ENTRA_CLIENT_ID": self.client_id,
            "HUB_ENTRA_CLIENT_SECRET": self.client_secret,
        }


def start_sandbox(processes: Processes, params: Params) -> Sandbox:
    port = free_port()
    state_dir = processes.workdir / "sandbox"
    sandbox = Sandbox(f"https://127.0.0.1:{port}", state_dir / "ca.pem", str(uuid.uuid4()), secrets.token_urlsafe(24))
    processes.start(
        "sandbox",
        "sandbox",
        child_environment(
            {
                "HUB_SANDBOX_PORT": str(port),
                "HUB_SANDBOX_STATE_DIR": str(state_dir),
                "HUB_SANDBOX_TENANTS": str(params.tenants),
                "HUB_SANDBOX_COMPANIES_PER_TENANT": str(params.companies_per_tenant),
                "HUB_SANDBOX_LATENCY_MS": str(params.latency_ms),
                "HUB_SANDBOX_MEMOIZE_ANSWERS": str(params.memoized_sandbox).lower(),
                "HUB_ENTRA_CLIENT_ID": sandbox.client_id,
                "HUB_ENTRA_CLIENT_SECRET": sandbox.client_secret,
            }
        ),
    )

    def healthy() -> bool:
        if not sandbox.ca_bundle.exists():
            return False
        try:
            with sandbox.http() as http:
                return http.get("/_sandbox/health", timeout=2).status_code == 200
        except (httpx.HTTPError, ssl.SSLError):
            return False

    wait_for("sandbox healthy", healthy, processes, timeout=60)
    return sandbox


def prepare_tenants(sandbox: Sandbox) -> list[Tenant]:
    """Grant consent everywhere (so T is exact), clear faults and counters, list the tenants."""
    with sandbox.http() as http:
        listed = http.get("/_sandbox/tenants").raise_for_status().json()["tenants"]
        for tenant in listed:
            if not tenant["consented"]:
                http.put(f"/_sandbox/tenants/{tenant['id']}/consent", json={"consented": True}).raise_for_status()
        http.delete("/_sandbox/faults").raise_for_status()
        http.delete("/_sandbox/limits/counters").raise_for_status()
    tenants = []
    for tenant in listed:
        production = next(e for e in tenant["environments"] if e["name"] == ENVIRONMENT)
        companies = tuple(c["id"] for c in production["companies"])
        tenants.append(Tenant(tenant["id"], tenant["domain"], companies, int(tenant["bc_version"].split(".")[0])))
    return tenants


def connection_of(tenant: Tenant) -> ClientConnection:
    return ClientConnection(tenant=tenant.domain, environment=ENVIRONMENT, tenant_id=uuid.UUID(tenant.id))


def trickling_tenants(tenants: list[Tenant], percent: float) -> list[Tenant]:
    """Every k-th tenant, ``percent`` of them: spread over the catalogue and its BC versions."""
    count = math.ceil(len(tenants) * percent / 100)
    if count == 0:
        return []
    step = len(tenants) / count
    return [tenants[int(index * step)] for index in range(count)]


# A byte every 2 s: each read gets data within any read timeout; only a deadline ends it.
TRICKLE_FAULT = {"kind": "trickle", "trickle_interval_seconds": 2}


def start_trickling(sandbox: Sandbox, tenants: list[Tenant]) -> None:
    with sandbox.http() as http:
        for tenant in tenants:
            http.put(f"/_sandbox/tenants/{tenant.id}/faults", json=TRICKLE_FAULT).raise_for_status()


def sandbox_limits(sandbox: Sandbox) -> dict[str, Any]:
    with sandbox.http() as http:
        limits: dict[str, Any] = http.get("/_sandbox/limits").raise_for_status().json()
        return limits


# ------------------------------------------------------------------ the run


@dataclass
class Outcome:
    kind: str  # "snapshot" or "failed"
    stored_at: float  # wall clock: when JetStream stored the event
    detail: str | None = None


@dataclass
class Observed:
    publish_started: float = 0.0
    publish_finished: float = 0.0
    cpu_at_publish: dict[str, float | None] = field(default_factory=dict)
    # (monotonic time, CPU seconds per process) about every 0.5 s while waiting.
    cpu_samples: list[tuple[float, dict[str, float | None]]] = field(default_factory=list)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    discovered_at: dict[str, float] = field(default_factory=dict)  # by tenant domain
    # When JetStream stored each snapshot, by its stream sequence (what the read model keeps).
    snapshot_stored_at: dict[int, float] = field(default_factory=dict)
    duplicates: int = 0
    timed_out: bool = False
    # Trickling tenants: RefreshDeferred and RefreshFailed seen for them during the run.
    trickling_deferred: int = 0
    trickling_failed: int = 0
    # When an open dashboard page (GET /api/v1/live) first received each company's new row.
    live_received: dict[str, float] = field(default_factory=dict)


def stored_at(msg: Msg) -> float:
    try:
        return msg.metadata.timestamp.timestamp()
    except Exception:
        return time.time()


@dataclass
class LivePage:
    """An open dashboard page: the gateway's live stream, as a browser's EventSource reads it."""

    url: str
    token: str


async def listen_live(page: LivePage, observed: Observed, ready: asyncio.Event) -> None:
    """Record when each company's refreshed row first reaches the open page."""
    headers = {"Authorization": f"Bearer {page.token}"}
    async with (
        httpx.AsyncClient(base_url=page.url, headers=headers, timeout=httpx.Timeout(10, read=None)) as client,
        client.stream("GET", "/api/v1/live") as stream,
    ):
        event = None
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "ready":
                ready.set()
            elif line.startswith("data: ") and event == "rows":
                received = time.time()
                for row in json.loads(line.removeprefix("data: "))["rows"]:
                    fresh = row["as_of"] and datetime.fromisoformat(row["as_of"]).timestamp() > observed.publish_started
                    if row["state"] == "ok" and row["company_id"] and fresh and observed.publish_started:
                        observed.live_received.setdefault(row["company_id"], received)


async def drive(
    nats_url: str,
    tenants: list[Tenant],
    processes: Processes,
    pids: Mapping[str, int],
    timeout: float,
    live_page: LivePage | None = None,
    *,
    warm_up: bool = False,
    trickling: list[Tenant] | None = None,
    sandbox: Sandbox | None = None,
) -> Observed:
    """Publish one RefreshRequested per tenant and wait for every company's outcome.

    ``trickling`` tenants are refreshed too, after the warm-up with the trickle fault on,
    but their outcomes are only counted, not waited for.
    """
    observed = Observed()
    slow = trickling or []
    client_tenant = {uuid.uuid4(): tenant for tenant in [*tenants, *slow]}
    slow_clients = {client_id for client_id, tenant in client_tenant.items() if tenant in slow}
    company_tenant = {company: tenant for tenant in tenants for company in tenant.companies}
    warm_companies = {company for tenant in client_tenant.values() for company in tenant.companies}
    expected = len(company_tenant)
    done = asyncio.Event()

    # With a live page, the clients are added first (ClientAdded, which the fetchers also
    # refresh): a page shows only rows of clients it knows. That warm-up round is not measured.
    warming = live_page is not None or warm_up
    warmed_up: set[str] = set()
    warm = asyncio.Event()

    def settle(company: str, outcome: Outcome) -> None:
        if warming:
            warmed_up.add(company)
            if len(warmed_up) >= len(warm_companies):
                warm.set()
            return
        if company not in company_tenant:
            return  # a trickling tenant's company
        if company in observed.outcomes:
            observed.duplicates += 1
            return
        observed.outcomes[company] = outcome
        if len(observed.outcomes) >= expected:
            done.set()

    async def on_snapshot(msg: Msg) -> None:
        envelope = decode_event(msg.data)
        if isinstance(envelope.data, CompanySnapshot):
            observed.snapshot_stored_at[msg.metadata.sequence.stream] = stored_at(msg)
            settle(str(envelope.data.company_id), Outcome("snapshot", stored_at(msg)))

    async def on_event(msg: Msg) -> None:
        envelope = decode_event(msg.data)
        data = envelope.data
        if isinstance(data, CompaniesDiscovered):
            observed.discovered_at[client_tenant[data.client_id].domain] = stored_at(msg)
        elif getattr(data, "client_id", None) in slow_clients and not warming:
            if isinstance(data, RefreshDeferred):
                observed.trickling_deferred += 1
            elif isinstance(data, RefreshFailed):
                observed.trickling_failed += 1
        elif isinstance(data, RefreshFailed):
            detail = f"{data.failure.kind.value}: {data.failure.message or data.failure.summary}"
            tenant = client_tenant[data.client_id]
            companies = [str(data.company_id)] if data.company_id else list(tenant.companies)
            for company in companies:
                settle(company, Outcome("failed", stored_at(msg), detail))

    async def quiet(_error: Exception) -> None:
        """Broker errors show up as a timeout or a missing outcome; no traceback on Ctrl-C."""

    connection = await nats.connect(nats_url, name="bench", error_cb=quiet, max_reconnect_attempts=3)
    try:
        js = connection.jetstream()
        await declare_topology(js)
        # Every tenant granted the firm access, as the registry records it; the fetchers
        # refuse to read a tenant for a firm without a grant.
        for tenant in client_tenant.values():
            granted = TenantAccessGranted(
                tenant_id=uuid.UUID(tenant.id), tenant=tenant.domain, method=GrantMethod.CONNECT
            )
            actor = Actor(kind=ActorKind.CLIENT_ADMIN, id=f"admin@{tenant.domain}")
            await grants.record_access(js, new_envelope(granted, firm_id=FIRM_ID, actor=actor))
        await js.subscribe(
            f"hub.{FIRM_ID}.company.*.snapshot", stream=SNAPSHOTS_STREAM, ordered_consumer=True, cb=on_snapshot
        )
        await js.subscribe(f"hub.{FIRM_ID}.>", stream=EVENTS_STREAM, ordered_consumer=True, cb=on_event)
        listener: asyncio.Task[None] | None = None
        if warming:
            print("adding the clients first (an unmeasured refresh of every tenant) ...", flush=True)
            await asyncio.gather(
                *(
                    publish_event(
                        js,
                        new_envelope(
                            ClientAdded(
                                client_id=client_id,
                                card=ClientCard(
                                    name=tenant.domain,
                                    client_url=f"https://businesscentral.dynamics.com/{tenant.domain}/{ENVIRONMENT}",
                                ),
                                connection=connection_of(tenant),
                                source=ClientSource.MANUAL,
                            ),
                            firm_id=FIRM_ID,
                            actor=BENCH_ACTOR,
                        ),
                    )
                    for client_id, tenant in client_tenant.items()
                )
            )
            await asyncio.wait_for(warm.wait(), timeout=timeout)
            warming = False
            observed.snapshot_stored_at.clear()
            observed.discovered_at.clear()
        if warm_up and sandbox is not None:
            # The measured round's operations and concurrency only.
            with sandbox.http() as http:
                http.delete("/_sandbox/limits/counters").raise_for_status()
        if slow:
            assert sandbox is not None
            start_trickling(sandbox, slow)
        if live_page is not None:
            live_ready = asyncio.Event()
            listener = asyncio.create_task(listen_live(live_page, observed, live_ready))
            await asyncio.wait_for(live_ready.wait(), timeout=30)
        envelopes = [
            new_envelope(
                RefreshRequested(
                    refresh_id=uuid.uuid4(),
                    client_id=client_id,
                    connection=connection_of(tenant),
                ),
                firm_id=FIRM_ID,
                actor=BENCH_ACTOR,
            )
            for client_id, tenant in client_tenant.items()
        ]
        observed.cpu_at_publish = {name: cpu_seconds(pid) for name, pid in pids.items()}
        observed.publish_started = time.time()
        await asyncio.gather(*(publish_event(js, envelope) for envelope in envelopes))
        observed.publish_finished = time.time()
        deadline = time.monotonic() + timeout
        while not done.is_set():
            processes.check_alive()
            if time.monotonic() > deadline:
                observed.timed_out = True
                break
            with suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=0.5)
            observed.cpu_samples.append((time.monotonic(), {name: cpu_seconds(pid) for name, pid in pids.items()}))
        if listener is not None:
            # The page hears of the last rows a moment after JetStream stored them.
            snapshots = sum(1 for outcome in observed.outcomes.values() if outcome.kind == "snapshot")
            settle_by = time.monotonic() + 30
            while len(observed.live_received) < snapshots and time.monotonic() < settle_by:  # noqa: ASYNC110 - a count with a deadline
                await asyncio.sleep(0.2)
            listener.cancel()
            with suppress(asyncio.CancelledError, httpx.HTTPError):
                await listener
    finally:
        await connection.close()
    return observed


def live_page_lags(observed: Observed) -> list[float]:
    """Seconds from each snapshot's store in JetStream to its row on the open page."""
    return [
        received - observed.outcomes[company].stored_at
        for company, received in observed.live_received.items()
        if company in observed.outcomes and observed.outcomes[company].kind == "snapshot"
    ]


async def open_live_page(database_url: str, gateway_url: str) -> LivePage:
    """An API token for an accountant of the bench's firm, made in the gateway's own table."""
    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            principal = Principal(uuid.uuid4(), FIRM_ID, "bench@bench.example", "bench", "owner")
            secret, _ = await create_api_token(session, principal, "bench live page")
    finally:
        await engine.dispose()
    return LivePage(gateway_url, secret)


async def declare(nats_url: str) -> None:
    connection = await nats.connect(nats_url, name="bench-declare")
    try:
        await declare_topology(connection.jetstream())
    finally:
        await connection.close()


# ------------------------------------------------------------------ the read model


def start_gateway(processes: Processes, nats_url: str, sandbox: Sandbox, database_url: str) -> tuple[Child, str]:
    """The gateway, projecting the run into its read model while the fetchers work."""
    port = free_port()
    gateway = processes.start(
        "gateway",
        "gateway",
        child_environment(
            {
                "HUB_NATS_URL": nats_url,
                "HUB_DATABASE_URL": database_url,
                "HUB_PORT": str(port),
                **sandbox.hub_environment(),
            }
        ),
    )

    def healthy() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for("gateway healthy", healthy, processes, timeout=90)
    return gateway, f"http://127.0.0.1:{port}"


async def read_model_lags(database_url: str, observed: Observed, timeout: float) -> list[float]:
    """Seconds from each snapshot's store in JetStream to its row's update in the read model.

    Waits until the gateway applied every snapshot of the run (each company gets exactly one).
    """
    engine = create_engine(database_url)
    wanted = set(observed.snapshot_stored_at)
    deadline = time.monotonic() + timeout
    try:
        while True:
            async with engine.connect() as connection:
                rows = (
                    await connection.execute(
                        select(col(CompanyRow.snapshot_sequence), col(CompanyRow.snapshot_applied_at)).where(
                            col(CompanyRow.firm_id) == FIRM_ID
                        )
                    )
                ).all()
            applied = {sequence: at for sequence, at in rows if sequence in wanted and at is not None}
            if len(applied) == len(wanted) or time.monotonic() > deadline:
                return [at.timestamp() - observed.snapshot_stored_at[sequence] for sequence, at in applied.items()]
            await asyncio.sleep(0.5)
    finally:
        await engine.dispose()


async def projections_idle(nats_url: str, timeout: float) -> bool:
    """Whether the gateway caught up with both streams (so its model can be compared)."""
    connection = await nats.connect(nats_url, name="bench-idle")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            infos = [
                await connection.jetstream().consumer_info(spec.stream, spec.durable)
                for spec in (GATEWAY_EVENTS_CONSUMER, GATEWAY_SNAPSHOTS_CONSUMER)
            ]
            if all(info.num_pending == 0 and info.num_ack_pending == 0 for info in infos):
                return True
            await asyncio.sleep(0.5)
        return False
    finally:
        await connection.close()


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile: the smallest value at least ``share`` of the values reach."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def lag_summary(lags: list[float], expected: int) -> dict[str, Any]:
    return {
        "snapshots_applied": len(lags),
        "snapshots_expected": expected,
        "lag_p50_ms": _round(1000 * p50, 1) if (p50 := percentile(lags, 0.50)) is not None else None,
        "lag_p99_ms": _round(1000 * p99, 1) if (p99 := percentile(lags, 0.99)) is not None else None,
        "lag_max_ms": _round(1000 * max(lags), 1) if lags else None,
    }


# ------------------------------------------------------------------ analysis


@dataclass
class TenantTrace:
    bc_round_trips: int = 0
    discovery_round_trips: int = 0
    batch_round_trips: int = 0
    operations: int = 0
    token_round_trips: int = 0
    oidc_round_trips: int = 0
    status_429: int = 0
    errors: int = 0
    first_bc_start: float | None = None
    last_bc_end: float | None = None
    bc_seconds: float = 0.0
    token_seconds: float = 0.0
    error_statuses: Counter[str] = field(default_factory=Counter)


def read_trace(
    directory: Path, tenants: list[Tenant], since: float = 0.0
) -> tuple[dict[str, TenantTrace], dict[int, int]]:
    """Round trips per tenant domain from the fetchers' HTTP trace, and round trips per pid.

    BC and OIDC paths name the tenant by the domain the fetcher was given; msal's token
    calls use the tenant id from the OIDC document. Round trips started before ``since``
    (the warm-up round) are left out.
    """
    domains = {t.domain: t.domain for t in tenants} | {t.id: t.domain for t in tenants}
    per_tenant: dict[str, TenantTrace] = defaultdict(TenantTrace)
    per_pid: dict[int, int] = Counter()
    for path in sorted(directory.glob("http-*.jsonl")):
        pid = int(path.stem.split("-")[1])
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if entry["start"] < since:
                continue
            parts = entry["path"].strip("/").split("/")
            duration = entry["end"] - entry["start"]
            if parts[0] == "v2.0" and len(parts) > 1 and parts[1] in domains:
                trace = per_tenant[domains[parts[1]]]
                trace.bc_round_trips += 1
                per_pid[pid] += 1
                trace.bc_seconds += duration
                trace.first_bc_start = min(trace.first_bc_start or entry["start"], entry["start"])
                trace.last_bc_end = max(trace.last_bc_end or entry["end"], entry["end"])
                if entry["path"].endswith("/$batch"):
                    trace.batch_round_trips += 1
                    trace.operations += entry["operations"] or 0
                else:
                    trace.operations += 1
                    if parts[-1] == "companies":
                        trace.discovery_round_trips += 1
            elif parts[0] in domains:
                trace = per_tenant[domains[parts[0]]]
                if "token" in parts:
                    trace.token_round_trips += 1
                    trace.token_seconds += duration
                else:
                    trace.oidc_round_trips += 1
            else:
                continue
            if entry["status"] == 429:
                trace.status_429 += 1
            if entry["error"] or (entry["status"] or 0) >= 400:
                trace.errors += 1
                trace.error_statuses[str(entry["status"] or entry["error"])] += 1
    return per_tenant, per_pid


def summarize_log(text: str) -> dict[str, Any]:
    """What a fetcher said: refreshes done, warnings and errors by message."""
    levels: Counter[str] = Counter()
    notable: Counter[str] = Counter()
    refreshes = 0
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            # FastStream's own lines are plain text; keep only its warnings and errors.
            if any(word in line for word in ("WARNING", "ERROR", "CRITICAL", "Traceback")):
                notable[f"(text) {line.strip()[-120:]}"] += 1
            continue
        level = str(entry.get("level", "?"))
        levels[level] += 1
        if entry.get("event") == "refresh done":
            refreshes += 1
        if level in ("warning", "error", "critical"):
            reason = entry.get("reason") or entry.get("error") or ""
            notable[f"{level}: {entry.get('event')} {str(reason)[:100]}".strip()] += 1
    return {"refreshes_done": refreshes, "levels": dict(levels), "notable": dict(notable.most_common(8))}


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def git(*arguments: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO_DIR), *arguments], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def analyze(
    params: Params,
    tenants: list[Tenant],
    observed: Observed,
    limits: Mapping[str, Any],
    memory: Mapping[str, int | None],
    cpu_at_end: Mapping[str, float | None],
    pids: Mapping[str, int],
    traces: dict[str, TenantTrace] | None,
    round_trips_by_pid: Mapping[int, int],
    logs: Mapping[str, str],
    trickling_count: int = 0,
) -> dict[str, Any]:
    latency = params.latency_ms / 1000
    counters = {c["tenant_id"]: c for c in limits["tenants"]}
    companies = sum(len(t.companies) for t in tenants)
    outcomes = observed.outcomes
    snapshots = [o for o in outcomes.values() if o.kind == "snapshot"]
    failed = {c: o for c, o in outcomes.items() if o.kind == "failed"}
    last = max((o.stored_at for o in outcomes.values()), default=observed.publish_started)
    makespan = last - observed.publish_started

    rows: list[dict[str, Any]] = []
    bounds: list[float] = []
    for tenant in tenants:
        counter = counters.get(tenant.id, {})
        n = len(tenant.companies)
        operations = int(counter.get("requests_served", 0))
        trace = traces.get(tenant.domain) if traces is not None else None
        if trace is not None:
            discovery = trace.discovery_round_trips
            company_round_trips = trace.bc_round_trips - discovery
        else:  # inferred: one companies GET, one $batch per company (misses cue GETs, paging, retries)
            discovery = 1
            company_round_trips = n
        # Discovery comes first (its answer names the companies); then the company round
        # trips share the tenant's 5 slots, each holding a slot for L; and beyond 6,000
        # operations the 5-minute window makes the rest wait.
        window_wait = max(0, math.ceil(operations / BC_WINDOW_REQUESTS) - 1) * BC_WINDOW_SECONDS
        bound = (discovery + math.ceil(company_round_trips / BC_MAX_CONCURRENT)) * latency + window_wait
        bounds.append(bound)
        finished = [outcomes[c].stored_at for c in tenant.companies if c in outcomes]
        row: dict[str, Any] = {
            "tenant": tenant.domain,
            "companies": n,
            "operations": operations,
            "round_trips": (discovery + company_round_trips) if trace is not None else None,
            "max_concurrency": counter.get("max_concurrency"),
            "throttled": counter.get("throttled"),
            "bound_seconds": round(bound, 4),
            "discovered_after_seconds": _after(observed.discovered_at.get(tenant.domain), observed),
            "done_after_seconds": _after(max(finished) if len(finished) == n else None, observed),
        }
        if trace is not None:
            row |= {
                "first_bc_call_after_seconds": _after(trace.first_bc_start, observed),
                "bc_span_seconds": _round((trace.last_bc_end or 0) - (trace.first_bc_start or 0)),
                "bc_busy_seconds": _round(trace.bc_seconds),
                "token_round_trips": trace.token_round_trips,
                "token_seconds": _round(trace.token_seconds),
                "oidc_round_trips": trace.oidc_round_trips,
                "client_429": trace.status_429,
                "client_errors": trace.errors,
            }
        rows.append(row)

    bound = max(bounds, default=0.0)
    operations_total = sum(r["operations"] for r in rows)
    discovery_total = (
        sum(traces[t.domain].discovery_round_trips for t in tenants if t.domain in traces) if traces else len(tenants)
    )
    round_trips_total = sum(r["round_trips"] or 0 for r in rows) if traces is not None else None
    company_round_trips_total = (round_trips_total - discovery_total) if round_trips_total is not None else None
    round_trips_per_company = company_round_trips_total / companies if company_round_trips_total is not None else 1.0
    # Each process keeps --fetcher-concurrency refreshes in flight; a refresh is discovery,
    # then its companies side by side (5 at a time, one round trip per company on BC 30).
    per_tenant_chain = (1 + math.ceil(params.companies_per_tenant / BC_MAX_CONCURRENT)) * latency
    waves = math.ceil(len(tenants) / (params.fetchers * params.fetcher_concurrency))
    round_trips_by_version: dict[str, float | None] = {}
    if traces is not None:
        for major in sorted({t.bc_major for t in tenants}):
            of_version = [t for t in tenants if t.bc_major == major and t.domain in traces]
            trips = sum(traces[t.domain].bc_round_trips - traces[t.domain].discovery_round_trips for t in of_version)
            company_count = sum(len(t.companies) for t in of_version)
            round_trips_by_version[f"bc{major}"] = _round(trips / company_count) if company_count else None

    def means(key: str) -> float | None:
        return _round(mean([r[key] for r in rows if r.get(key) is not None]))

    busy = busy_per_second(observed.cpu_samples, pids)
    cpu_used = {
        name: used
        for name in pids
        if (used := _difference(cpu_at_end.get(name), observed.cpu_at_publish.get(name))) is not None
    }
    processes = [
        {
            "name": name,
            "pid": pid,
            "vmhwm_mib": _mib(memory.get(name)),
            "cpu_seconds_during_run": _round(cpu_used.get(name)),
            "cpu_ms_per_company": _round(1000 * cpu_used[name] / companies, 1) if name in cpu_used else None,
            "cpu_busy_fraction": _round(cpu_used[name] / makespan, 2) if name in cpu_used and makespan > 0 else None,
            "cpu_busy_peak_1s": _round(max(busy[name], default=None), 2),
            "cpu_busy_median_1s": _round(statistics.median(busy[name]), 2) if busy[name] else None,
            "bc_round_trips": round_trips_by_pid.get(pid) if traces is not None else None,
            **({"log": summarize_log(logs[name])} if name.startswith("fetcher") else {}),
        }
        for name, pid in pids.items()
    ]
    # The machine's bound: every process's CPU during the run, spread over every core.
    cpu_bound = sum(cpu_used.values()) / (os.cpu_count() or 1)
    fetcher_memory = [_mib(memory.get(name)) for name in pids if name.startswith("fetcher")]
    return {
        "benchmark": "refresh",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted_changes": [line[3:] for line in git("status", "--porcelain").splitlines() if line.strip()],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        "params": asdict(params),
        "command": "python -m bench.refresh " + " ".join(sys.argv[1:]),
        "outcome": {
            "tenants": len(tenants),
            "companies": companies,
            "snapshots": len(snapshots),
            "failed": len(failed),
            "missing": companies - len(outcomes),
            "timed_out": observed.timed_out,
            "duplicate_outcomes": observed.duplicates,
            "failures": Counter(o.detail for o in failed.values()).most_common(10),
        },
        "timing": {
            "publish_seconds": _round(observed.publish_finished - observed.publish_started),
            "makespan_seconds": _round(makespan),
            "throughput_companies_per_second": _round(len(snapshots) / makespan) if makespan > 0 else None,
            "bc_limits_bound_seconds": _round(bound),
            "makespan_over_bound": _round(makespan / bound) if bound > 0 else None,
            "cpu_bound_seconds": _round(cpu_bound),
            "makespan_over_cpu_bound": _round(makespan / cpu_bound) if cpu_bound > 0 else None,
            "fetcher_design_bound_seconds": _round(waves * per_tenant_chain),
            "fetcher_design_waves": waves,
            "mean_tenant_discovered_after_seconds": means("discovered_after_seconds"),
            "mean_tenant_first_bc_call_after_seconds": means("first_bc_call_after_seconds"),
            "mean_tenant_bc_span_seconds": means("bc_span_seconds"),
            "mean_tenant_done_after_seconds": means("done_after_seconds"),
            "mean_tenant_token_seconds": means("token_seconds"),
        },
        "bc": {
            "round_trip_source": "client HTTP trace (bench/probe)" if traces is not None else "inferred",
            "operations_total": operations_total,
            "operations_per_company": _round((operations_total - discovery_total) / companies) if companies else None,
            "bc_round_trips_total": round_trips_total,
            "discovery_round_trips": discovery_total,
            "batch_round_trips": sum(t.batch_round_trips for t in traces.values()) if traces is not None else None,
            "other_get_round_trips": (
                sum(t.bc_round_trips - t.batch_round_trips - t.discovery_round_trips for t in traces.values())
                if traces is not None
                else None
            ),
            "round_trips_per_company": _round(round_trips_per_company),
            "round_trips_per_company_by_bc_version": round_trips_by_version,
            "token_round_trips": sum(r.get("token_round_trips", 0) for r in rows) if traces is not None else None,
            "oidc_round_trips": sum(r.get("oidc_round_trips", 0) for r in rows) if traces is not None else None,
            "max_concurrency_per_tenant": max((r["max_concurrency"] or 0 for r in rows), default=0),
            "tenants_over_5_concurrent": sum(1 for r in rows if (r["max_concurrency"] or 0) > BC_MAX_CONCURRENT),
            "throttled_429_sandbox": sum(r["throttled"] or 0 for r in rows),
            "status_429_client": sum(r.get("client_429", 0) for r in rows) if traces is not None else None,
            "client_errors": sum(r.get("client_errors", 0) for r in rows) if traces is not None else None,
            "client_errors_by_status": (
                dict(sum((t.error_statuses for t in traces.values()), Counter[str]())) if traces is not None else None
            ),
        },
        "processes": processes,
        "fetcher_vmhwm_mib": fetcher_memory,
        "trickling": {
            "tenants": trickling_count,
            "deferred_events": observed.trickling_deferred,
            "failed_events": observed.trickling_failed,
        },
        "tenants": rows,
    }


def busy_per_second(
    samples: list[tuple[float, dict[str, float | None]]], pids: Mapping[str, int]
) -> dict[str, list[float]]:
    """Each process's share of one core over windows of about a second."""
    busy: dict[str, list[float]] = {name: [] for name in pids}
    start = 0
    for end in range(1, len(samples)):
        elapsed = samples[end][0] - samples[start][0]
        if elapsed < 0.95:
            continue
        for name in pids:
            used = _difference(samples[end][1].get(name), samples[start][1].get(name))
            if used is not None:
                busy[name].append(used / elapsed)
        start = end
    return busy


def _mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _difference(end: float | None, start: float | None) -> float | None:
    return None if end is None or start is None else end - start


def _after(moment: float | None, observed: Observed) -> float | None:
    return None if moment is None else _round(moment - observed.publish_started)


# ------------------------------------------------------------------ report


def render(result: Mapping[str, Any]) -> str:
    params, timing, bc, outcome = result["params"], result["timing"], result["bc"], result["outcome"]
    lines = [
        f"refresh benchmark  tenants={params['tenants']} companies/tenant={params['companies_per_tenant']}"
        f" latency={params['latency_ms']}ms fetchers={params['fetchers']}"
        f" (concurrency {params['fetcher_concurrency']} each)  commit {result['commit']}"
        f"{' + uncommitted changes' if result['uncommitted_changes'] else ''}",
        "",
    ]

    def row(label: str, value: object, note: str = "") -> None:
        shown = "-" if value is None else value
        lines.append(f"  {label:<38} {shown!s:>12}  {note}")

    row("companies", outcome["companies"], f"{outcome['tenants']} tenants")
    row("snapshots", outcome["snapshots"])
    row("failed / missing", f"{outcome['failed']} / {outcome['missing']}", "timed out" if outcome["timed_out"] else "")
    row("publish (s)", timing["publish_seconds"])
    row("makespan (s)", timing["makespan_seconds"], "first publish -> last snapshot stored")
    row("BC-limits lower bound (s)", timing["bc_limits_bound_seconds"], "max over tenants, see README")
    row("makespan / bound", timing["makespan_over_bound"])
    row("CPU bound (s)", timing.get("cpu_bound_seconds"), "every process's CPU during the run / cores")
    row("makespan / CPU bound", timing.get("makespan_over_cpu_bound"))
    row("fetcher-design bound (s)", timing["fetcher_design_bound_seconds"], f"{timing['fetcher_design_waves']} waves")
    row("throughput (companies/s)", timing["throughput_companies_per_second"])
    row("mean tenant: first BC call after (s)", timing["mean_tenant_first_bc_call_after_seconds"])
    row("mean tenant: discovered after (s)", timing["mean_tenant_discovered_after_seconds"])
    row("mean tenant: BC span (s)", timing["mean_tenant_bc_span_seconds"], "first BC call -> last BC answer")
    row("mean tenant: done after (s)", timing["mean_tenant_done_after_seconds"])
    row("mean tenant: token time (s)", timing["mean_tenant_token_seconds"])
    row("BC operations / company", bc["operations_per_company"], "sandbox requests_served")
    row("BC round trips / company", bc["round_trips_per_company"], bc["round_trip_source"])
    row("  by BC version", bc.get("round_trips_per_company_by_bc_version"))
    row(
        "BC round trips total",
        bc["bc_round_trips_total"],
        f"{bc['discovery_round_trips']} discovery, {bc['batch_round_trips']} $batch,"
        f" {bc['other_get_round_trips']} other GETs",
    )
    row("token / OIDC round trips", f"{bc['token_round_trips']} / {bc['oidc_round_trips']}")
    row("max concurrency per tenant", bc["max_concurrency_per_tenant"], "sandbox; BC allows 5")
    read_model = result.get("read_model")
    if read_model:
        row(
            "read-model lag p50 / p99 (ms)",
            f"{read_model['lag_p50_ms']} / {read_model['lag_p99_ms']}",
            f"snapshot stored -> row updated; {read_model['snapshots_applied']}/{read_model['snapshots_expected']}"
            f" applied, max {read_model['lag_max_ms']} ms",
        )
    live = result.get("live_page")
    if live:
        row(
            "live page lag p50 / p99 (ms)",
            f"{live['lag_p50_ms']} / {live['lag_p99_ms']}",
            f"snapshot stored -> row on an open page (SSE); {live['snapshots_applied']}/{live['snapshots_expected']}"
            f" received, max {live['lag_max_ms']} ms",
        )
    replay = result.get("replay")
    if replay:
        rebuilt = replay["rebuild"]
        row(
            "replay: raw nats-py / hub rebuild",
            f"{replay['raw']['messages_per_second']} / {round(rebuilt['messages_per_second'])}",
            f"messages/s over {replay['raw']['messages']} messages; rebuild = {replay['rebuild_share_of_raw']} of raw,"
            f" equal to live: {rebuilt['equal_to_live']}",
        )
    row("429s (sandbox / client)", f"{bc['throttled_429_sandbox']} / {bc['status_429_client']}")
    trickling = result.get("trickling") or {}
    if trickling.get("tenants"):
        row(
            "trickling tenants",
            trickling["tenants"],
            f"not in the makespan; {trickling['deferred_events']} RefreshDeferred,"
            f" {trickling['failed_events']} RefreshFailed during the run",
        )
    row("client HTTP errors", bc["client_errors"], f"by status: {bc['client_errors_by_status']}")
    lines.append("")
    lines.append(
        f"  {'process':<12} {'VmHWM MiB':>10} {'CPU s':>8} {'CPU ms/co':>9} {'busy':>5} {'peak':>5}"
        f" {'BC trips':>9} {'refreshes':>9}  log notes"
    )
    for process in result["processes"]:
        log = process.get("log", {})
        notes = "; ".join(f"{k} x{v}" for k, v in log.get("notable", {}).items())
        lines.append(
            f"  {process['name']:<12} {_dash(process['vmhwm_mib']):>10} {_dash(process['cpu_seconds_during_run']):>8}"
            f" {_dash(process['cpu_ms_per_company']):>9} {_dash(process['cpu_busy_fraction']):>5}"
            f" {_dash(process['cpu_busy_peak_1s']):>5}"
            f" {_dash(process['bc_round_trips']):>9} {_dash(log.get('refreshes_done')):>9}  {notes[:150]}"
        )
    if outcome["failures"]:
        lines.append("")
        lines.append("  failures:")
        lines.extend(f"    {count} x {detail}" for detail, count in outcome["failures"])
    return "\n".join(lines)


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


# ------------------------------------------------------------------ main


@contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM unwind at once, so the finally blocks stop every child.

    Our own SIGINT handler also keeps asyncio.run from installing its own, which would
    first let the wait loop see the children (which got the terminal's SIGINT too) exit.
    """

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {number: signal.signal(number, interrupt) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run(params: Params, *, keep_workdir: bool) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="hub-bench-refresh-"))
    processes = Processes(workdir)
    succeeded = False
    try:
        processes.nats = LocalNatsServer(workdir / "nats").start()
        nats_url = processes.nats.url
        asyncio.run(declare(nats_url))
        sandbox = start_sandbox(processes, params)
        every_tenant = prepare_tenants(sandbox)
        trickling = trickling_tenants(every_tenant, params.trickling_percent)
        tenants = [tenant for tenant in every_tenant if tenant not in trickling]
        trace_dir = workdir / "http-trace"
        trace_dir.mkdir()
        fetcher_environment = {
            "HUB_NATS_URL": nats_url,
            "HUB_CONCURRENCY": str(params.fetcher_concurrency),
            **sandbox.hub_environment(),
        }
        if params.trace:
            python_path = os.pathsep.join(filter(None, [str(PROBE_DIR), os.environ.get("PYTHONPATH")]))
            fetcher_environment |= {"PYTHONPATH": python_path, "BENCH_HTTP_TRACE_DIR": str(trace_dir)}
        gateway_database = f"sqlite:///{workdir / 'gateway.db'}"
        live_page: LivePage | None = None
        if params.gateway:
            _, gateway_url = start_gateway(processes, nats_url, sandbox, gateway_database)
            live_page = asyncio.run(open_live_page(gateway_database, gateway_url))
        fetchers = [
            processes.start(f"fetcher-{index}", "fetcher", child_environment(fetcher_environment))
            for index in range(1, params.fetchers + 1)
        ]
        wait_for("fetchers ready", lambda: all('"fetcher ready"' in f.log() for f in fetchers), processes, timeout=90)
        pids = {child.name: child.process.pid for child in processes.children}
        assert processes.nats.process is not None
        pids["nats-server"] = processes.nats.process.pid
        pids["bench"] = os.getpid()  # publishes and decodes every outcome
        print(f"started nats, sandbox and {params.fetchers} fetcher(s) in {workdir}; refreshing ...", flush=True)

        observed = asyncio.run(
            drive(
                nats_url,
                tenants,
                processes,
                pids,
                params.timeout_seconds,
                live_page,
                warm_up=params.warm_up,
                trickling=trickling,
                sandbox=sandbox,
            )
        )

        cpu_at_end = {name: cpu_seconds(pid) for name, pid in pids.items()}
        memory = {name: proc_status_kib(pid, "VmHWM") for name, pid in pids.items()}
        limits = sandbox_limits(sandbox)
        read_model: dict[str, Any] | None = None
        live: dict[str, Any] | None = None
        replay: dict[str, Any] | None = None
        if params.gateway:
            lags = asyncio.run(read_model_lags(gateway_database, observed, timeout=120))
            read_model = lag_summary(lags, len(observed.snapshot_stored_at))
            live = lag_summary(live_page_lags(observed), len(observed.snapshot_stored_at))
            caught_up = asyncio.run(projections_idle(nats_url, timeout=120))
            if params.replay:
                print("measuring replay: raw nats-py consumption, then hub rebuild ...", flush=True)
                replay = measure_replay(nats_url, gateway_database if caught_up else None, workdir).as_json()
        processes.stop()
        traces, by_pid = read_trace(trace_dir, tenants, observed.publish_started) if params.trace else (None, {})
        logs = {child.name: child.log() for child in processes.children}
        result = analyze(
            params, tenants, observed, limits, memory, cpu_at_end, pids, traces, by_pid, logs, len(trickling)
        )
        result["read_model"] = read_model
        result["live_page"] = live
        result["replay"] = replay
        succeeded = not observed.timed_out and not result["outcome"]["failed"]
        return result
    finally:
        processes.stop()
        if keep_workdir or not succeeded:
            print(f"logs kept in {workdir / 'logs'}", file=sys.stderr, flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def parse_arguments(argv: list[str] | None = None) -> tuple[Params, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m bench.refresh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, required=True, help="sandbox tenants (all get consent)")
    parser.add_argument("--companies-per-tenant", type=int, required=True)
    parser.add_argument("--latency-ms", type=int, default=0, help="added by the sandbox to every BC request")
    parser.add_argument("--fetchers", type=int, default=1, help="fetcher processes")
    parser.add_argument(
        "--fetcher-concurrency",
        type=int,
        default=FetcherSettings.model_fields["concurrency"].default,
        help="HUB_CONCURRENCY of each fetcher (default: the fetcher's own default)",
    )
    parser.add_argument("--timeout", type=float, default=150.0, help="seconds to wait for every company")
    parser.add_argument("--no-trace", action="store_true", help="do not trace the fetchers' HTTP round trips")
    parser.add_argument("--no-gateway", action="store_true", help="no gateway: no read-model lag, no replay")
    parser.add_argument("--no-replay", action="store_true", help="skip the replay measurement at the end")
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs and the JetStream store")
    parser.add_argument(
        "--memoized-sandbox",
        action="store_true",
        help="the sandbox serves each answer from memory once computed (limits and latency still hold)",
    )
    parser.add_argument("--warm-up", action="store_true", help="refresh every tenant once, unmeasured, first")
    parser.add_argument(
        "--trickling-percent",
        type=float,
        default=0.0,
        help="this share of tenants answers a byte every 2 s in the measured round (not in the makespan)",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    arguments = parser.parse_args(argv)
    for name in ("tenants", "companies_per_tenant", "fetchers", "fetcher_concurrency"):
        if getattr(arguments, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    params = Params(
        tenants=arguments.tenants,
        companies_per_tenant=arguments.companies_per_tenant,
        latency_ms=arguments.latency_ms,
        fetchers=arguments.fetchers,
        fetcher_concurrency=arguments.fetcher_concurrency,
        timeout_seconds=arguments.timeout,
        trace=not arguments.no_trace,
        gateway=not arguments.no_gateway,
        replay=not arguments.no_replay,
        memoized_sandbox=arguments.memoized_sandbox,
        warm_up=arguments.warm_up,
        trickling_percent=arguments.trickling_percent,
    )
    return params, arguments


def main(argv: list[str] | None = None) -> int:
    params, arguments = parse_arguments(argv)
    configure_logging(HubSettings(service_name="bench", log_level="WARNING"))
    try:
        with signals_as_interrupt():
            result = run(params, keep_workdir=arguments.keep_workdir)
    except KeyboardInterrupt:
        print("interrupted; every process stopped", file=sys.stderr, flush=True)
        return 130
    print(render(result))
    results_dir: Path = arguments.results_dir
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"refresh-{params.slug}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {path.relative_to(REPO_DIR) if path.is_relative_to(REPO_DIR) else path}")
    return 0 if result["outcome"]["snapshots"] == result["outcome"]["companies"] else 1


if __name__ == "__main__":
    sys.exit(main())
