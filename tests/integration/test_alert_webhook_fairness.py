"""Alert webhooks are sent fairly by the real registry process: a firm whose receiver never
answers (a TCP server that accepts and then says nothing) holds a few of the sender's places,
and another firm's webhook goes out at once instead of after the stalled attempts. The claims
behind it take turns across firms and cap a destination many firms share."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import SecretStr

from hub_common.commands import AlertRuleFields, SetAlertRule
from hub_common.db import create_engine, migrate, session_factory, transaction
from hub_common.events import Actor, ActorKind
from hub_common.local_nats import LocalNatsServer, free_port
from hub_registry.app import MIGRATIONS, VERSION_TABLE
from hub_registry.models import Accountant, AlertWebhookDelivery, Firm
from hub_registry.service import alerts
from hub_registry.settings import RegistrySettings
from tests.support.processes import ServiceProcess, start_service
from tests.support.waiting import eventually

SECRET_KEY = "webhook-fairness-secret-key-long-enough-for-sealing"
# The registry's default: a stalled attempt ends after this (the read times out) to twice this.
WEBHOOK_TIMEOUT_SECONDS = 10
# More than the sender ever had out at once, all due before the other firm's.
STALLED_DELIVERIES = 30


class Tarpit:
    """A receiver that accepts every connection and never answers; counts what it holds."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return  # closed at the end of the test
            self.connections.append(connection)

    def held_open(self) -> int:
        """Connections the sender has not given up on yet (a closed one reads as ended)."""
        open_now = 0
        for connection in self.connections:
            connection.setblocking(False)
            try:
                ended = connection.recv(65536, socket.MSG_PEEK) == b""
            except BlockingIOError:
                ended = False
            except OSError:
                ended = True
            open_now += not ended
        return open_now

    def close(self) -> None:
        self.listener.close()
        for connection in self.connections:
            connection.close()


class _Arrivals(BaseHTTPRequestHandler):
    arrived: ClassVar[list[float]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.arrived.append(time.monotonic())
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def tarpit() -> Iterator[Tarpit]:
    holding = Tarpit()
    yield holding
    holding.close()


@pytest.fixture
def answering_port() -> Iterator[int]:
    _Arrivals.arrived = []
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Arrivals)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def registry_process(database_url: str, tmp_path: Path) -> Iterator[ServiceProcess]:
    """The registry alone on a broker of its own, so it holds the lease that sends webhooks."""
    with LocalNatsServer(tmp_path / "nats") as nats:
        process = start_service(
            "registry",
            "registry",
            {
                "HUB_NATS_URL": nats.url,
                "HUB_DATABASE_URL": database_url,
                "HUB_SECRET_KEY": SECRET_KEY,
                "HUB_ALERT_WEBHOOK_ALLOW_LOOPBACK": "true",
                "HUB_ALERT_WEBHOOK_TIMEOUT_SECONDS": str(WEBHOOK_TIMEOUT_SECONDS),
            },
            tmp_path / "logs",
        )
        try:
            eventually(lambda: "registry ready" in process.log() or process.process.poll() is not None, "the registry")
            assert process.process.poll() is None, process.log()[-3000:]
            yield process
        finally:
            process.stop()


@dataclass(frozen=True)
class WebhookFirm:
    firm_id: uuid.UUID
    # Each webhook URL's rule.
    rules: dict[str, uuid.UUID]


async def _firm_with_webhook_rules(settings: RegistrySettings, database_url: str, urls: list[str]) -> WebhookFirm:
    """A firm, its owner and one webhook rule per URL, saved as the registry saves them."""
    firm_id, owner = uuid.uuid4(), uuid.uuid4()
    engine = create_engine(database_url)
    try:
        sessions = session_factory(engine)
        async with transaction(sessions) as session:
            session.add(Firm(id=firm_id, name=f"Firm {firm_id.hex[:6]}"))
            await session.flush()
            email = f"owner-{firm_id.hex[:6]}@fairness.example"
            session.add(Accountant(id=owner, firm_id=firm_id, email=email, display_name="Owner", role="owner"))
        rules: dict[str, uuid.UUID] = {}
        for url in urls:
            command = SetAlertRule(
                firm_id=firm_id,
                actor=Actor(kind=ActorKind.ACCOUNTANT, id=str(owner)),
                correlation_id="test",
                rule=AlertRuleFields(
                    name="Cash",
                    figure="cash",
                    comparison="below",
                    threshold=Decimal(1),
                    email=False,
                    webhook_url=url,
                ),
            )
            webhook_refused = await alerts.check_webhook_host(command, settings)
            async with transaction(sessions) as session:
                saved = await alerts.set_alert_rule(
                    session=session, command=command, settings=settings, webhook_refused=webhook_refused
                )
            rules[url] = saved.rule_id
    finally:
        await engine.dispose()
    return WebhookFirm(firm_id, rules)


async def _queue(database_url: str, firm: WebhookFirm, due: list[tuple[str, datetime]]) -> None:
    """Deliveries due as an AlertRaised writes them: (URL, when due) each."""
    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            for url, next_attempt_at in due:
                session.add(
                    AlertWebhookDelivery(
                        id=uuid.uuid4(),
                        firm_id=firm.firm_id,
                        rule_id=firm.rules[url],
                        url=url,
                        body='{"type": "AlertRaised"}',
                        next_attempt_at=next_attempt_at,
                    )
                )
    finally:
        await engine.dispose()


async def test_a_firm_whose_receiver_never_answers_does_not_hold_up_another_firms_webhook(
    registry_process: ServiceProcess, database_url: str, tarpit: Tarpit, answering_port: int
) -> None:
    settings = RegistrySettings(
        secret_key=SecretStr(SECRET_KEY), alert_webhook_allow_loopback=True, database_url=database_url
    )
    # The stalling firm's rules point at the tarpit under several paths: one destination.
    stalled_urls = [f"http://127.0.0.1:{tarpit.port}/rule-{n}" for n in range(3)]
    stalling = await _firm_with_webhook_rules(settings, database_url, stalled_urls)
    answered_url = f"http://127.0.0.1:{answering_port}/hook"
    answered = await _firm_with_webhook_rules(settings, database_url, [answered_url])
    now = datetime.now(UTC)
    await _queue(
        database_url,
        stalling,
        [(stalled_urls[n % 3], now - timedelta(hours=1) + timedelta(seconds=n)) for n in range(STALLED_DELIVERIES)],
    )
    await _queue(database_url, answered, [(answered_url, now)])
    queued_at = time.monotonic()

    arrived = eventually(lambda: list(_Arrivals.arrived), "the answering firm's webhook", timeout=40)
    waited = arrived[0] - queued_at
    # It goes out at the sender's next look (every 2 s), not once stalled attempts end (10-20 s).
    assert waited < 8, f"the answering firm's webhook waited {waited:.1f} s behind the stalled ones"
    held = tarpit.held_open()
    assert 1 <= held <= alerts.WEBHOOKS_PER_FIRM, f"the stalling firm held {held} places"
    assert registry_process.process.poll() is None


async def test_claims_take_turns_across_firms_and_cap_a_shared_destination(database_url: str) -> None:
    await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE)
    settings = RegistrySettings(
        secret_key=SecretStr(SECRET_KEY), alert_webhook_allow_loopback=True, database_url=database_url
    )
    shared = "http://127.0.0.1:9/shared"
    busy = await _firm_with_webhook_rules(settings, database_url, [shared, "http://127.0.0.1:10/own"])
    quiet = await _firm_with_webhook_rules(settings, database_url, [shared])
    now = datetime.now(UTC)
    older = [(shared, now - timedelta(hours=1) + timedelta(seconds=n)) for n in range(10)]
    await _queue(database_url, busy, [*older, ("http://127.0.0.1:10/own", now)])
    await _queue(database_url, quiet, [(shared, now)])
    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            first = await alerts.claim_due_deliveries(
                session=session, now=now, hold=timedelta(minutes=1), limit=3, per_firm=2, per_destination=3
            )
            # The quiet firm's one is claimed before the busy firm's second, however old.
            assert [(d.firm_id, d.url) for d in first] == [
                (busy.firm_id, shared),
                (quiet.firm_id, shared),
                (busy.firm_id, shared),
            ]
            second = await alerts.claim_due_deliveries(
                session=session, now=now, hold=timedelta(minutes=1), sending=first, per_firm=3, per_destination=3
            )
            # The shared destination has its three out; the busy firm's other receiver does not wait.
            assert [(d.firm_id, d.url) for d in second] == [(busy.firm_id, "http://127.0.0.1:10/own")]
    finally:
        await engine.dispose()
