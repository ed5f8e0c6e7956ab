"""Alerts in the registry, on a real database (SQLite and PostgreSQL) and a real HTTP
receiver: failing for more than Z hours starts on the clock and ends at the next read, a
daily digest lists the episodes since the last one, once; an older snapshot changes no
episode; a webhook answered 503 is tried again later and then delivered, signed; who may
see and change which rule."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ssl
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import trustme
from pydantic import SecretStr
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from hub_common.commands import (
    AlertRuleFields,
    AlertRuleSaved,
    AlertRuleView,
    ColleagueRemoved,
    CommandRejected,
    ListAlertRules,
    RejectionReason,
    RemoveAlertRule,
    RemoveClient,
    RemoveColleague,
    SetAlertRule,
)
from hub_common.db import create_engine, migrate, session_factory, transaction
from hub_common.events import (
    Actor,
    ActorKind,
    AlertDigestDue,
    AlertRaised,
    AlertResolved,
    AlertRuleRemoved,
    AlertRuleSet,
    CashFigure,
    CompaniesDiscovered,
    CompanyFigures,
    CompanySnapshot,
    DiscoveredCompany,
    EventData,
    Failure,
    FailureKind,
    RefreshFailed,
    decode_event,
    new_envelope,
)
from hub_common.local_nats import free_port
from hub_common.settings import DEV_SECRET_KEY, Mode
from hub_registry import webhooks
from hub_registry.app import MIGRATIONS, VERSION_TABLE
from hub_registry.models import (
    Accountant,
    AlertEpisodeRow,
    AlertFailureRow,
    AlertRuleRow,
    AlertWebhookDelivery,
    Client,
    Firm,
    registry_outbox,
)
from hub_registry.service import alerts, clients, firms
from hub_registry.service.shared import Context, acting_member
from hub_registry.settings import RegistrySettings
from tests.conftest import POSTGRESQL_ONLY

SETTINGS = RegistrySettings(
    secret_key=SecretStr("integration-secret-key-long-enough-for-sealing"),
    alert_webhook_allow_loopback=True,
    alert_webhook_retry_seconds=30,
)
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


class Registry:
    """A migrated registry database with one firm, its owner, a staff member and a client."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.firm_id = uuid.uuid4()
        self.owner = uuid.uuid4()
        self.staff = uuid.uuid4()
        self.client_id = uuid.uuid4()
        self.company_id = uuid.uuid4()
        self.seen = 0

    def actor(self, accountant: uuid.UUID) -> Actor:
        return Actor(kind=ActorKind.ACCOUNTANT, id=str(accountant))

    async def rule(self, accountant: uuid.UUID, **fields: Any) -> uuid.UUID:
        return (await self.save(accountant, **fields)).rule_id

    async def save(
        self,
        accountant: uuid.UUID,
        rule_id: uuid.UUID | None = None,
        *,
        new_webhook_secret: bool = False,
        creation_key: str | None = None,
        webhook_may_change: bool = True,
        **fields: Any,
    ) -> AlertRuleSaved:
        """Define a rule, or change one (``rule_id``); the registry's answer."""
        command = SetAlertRule(
            firm_id=self.firm_id,
            actor=self.actor(accountant),
            correlation_id="test",
            rule_id=rule_id,
            rule=AlertRuleFields(**{"name": "Rule", "client_id": self.client_id, **fields}),
            language="de",
            new_webhook_secret=True if new_webhook_secret else None,
            creation_key=creation_key,
            webhook_may_change=webhook_may_change,
        )
        webhook_refused = await alerts.check_webhook_host(command, SETTINGS)
        async with transaction(self.sessions) as session:
            return await alerts.set_alert_rule(
                session=session, command=command, settings=SETTINGS, webhook_refused=webhook_refused
            )

    async def remove(self, rule_id: uuid.UUID) -> None:
        async with transaction(self.sessions) as session:
            command = RemoveAlertRule(
                firm_id=self.firm_id, actor=self.actor(self.owner), correlation_id="rm", rule_id=rule_id
            )
            await alerts.remove_alert_rule(session=session, command=command)

    async def another_client(self) -> uuid.UUID:
        client_id = uuid.uuid4()
        async with transaction(self.sessions) as session:
            session.add(
                Client(
                    id=client_id,
                    firm_id=self.firm_id,
                    name="Other client",
                    client_url="https://businesscentral.dynamics.com/o.example/Production",
                    tenant="o.example",
                    tenant_id=uuid.uuid4(),
                    environment="Production",
                    source="manual",
                )
            )
        return client_id

    async def failed(
        self, occurred_at: datetime, client_id: uuid.UUID | None = None, *, accounts_revision: int = 0
    ) -> None:
        """A RefreshFailed of the client as a whole (a failed discovery), handled now."""
        failed = RefreshFailed(
            refresh_id=uuid.uuid4(),
            client_id=client_id or self.client_id,
            failure=Failure(kind=FailureKind.TIMEOUT, summary="s", fix="f", occurred_at=occurred_at),
            accounts_revision=accounts_revision,
        )
        async with transaction(self.sessions) as session:
            envelope = new_envelope(failed, firm_id=self.firm_id, actor=Actor.service("fetcher"))
            await alerts.on_refresh_failed(session=session, failed=envelope)

    async def check_failures(self, at: datetime) -> list[AlertRaised]:
        async with transaction(self.sessions) as session:
            await alerts.check_failures(session=session, now=at, correlation_id="tick")
        return [event for event in await self.new_events() if isinstance(event, AlertRaised)]

    async def digests(self, at: datetime) -> list[AlertDigestDue]:
        async with transaction(self.sessions) as session:
            await alerts.send_due_digests(session=session, now=at, correlation_id="tick")
        return [event for event in await self.new_events() if isinstance(event, AlertDigestDue)]

    async def snapshot(
        self, cash: str, read_at: datetime, client_id: uuid.UUID | None = None, *, accounts_revision: int = 0
    ) -> int:
        data = CompanySnapshot(
            accounts_revision=accounts_revision,
            client_id=client_id or self.client_id,
            company_id=self.company_id,
            company_name="CRONUS",
            refresh_id=uuid.uuid4(),
            currency_code="EUR",
            read_at=read_at,
            web_client_link="https://businesscentral.dynamics.com/t/Production?company=CRONUS",
            figures=CompanyFigures(cash=CashFigure(accounts=[], total=Decimal(cash), source="api", read_at=read_at)),
        )
        async with transaction(self.sessions) as session:
            return await alerts.on_snapshot(
                session=session, snapshot=new_envelope(data, firm_id=self.firm_id, actor=Actor.service("fetcher"))
            )

    async def discovered(self, *companies: uuid.UUID, at: datetime, accounts_revision: int = 0) -> None:
        """A full discovery of the client at ``at``, listing ``companies``, handled now."""
        data = CompaniesDiscovered(
            client_id=self.client_id,
            refresh_id=uuid.uuid4(),
            companies=[DiscoveredCompany(company_id=company, name="C") for company in companies],
            accounts_revision=accounts_revision,
        )
        envelope = new_envelope(data, firm_id=self.firm_id, actor=Actor.service("fetcher"))
        async with transaction(self.sessions) as session:
            await alerts.on_companies_discovered(
                session=session, discovered=envelope.model_copy(update={"occurred_at": at})
            )

    async def new_events(self) -> list[EventData]:
        """The events the registry appended to its outbox since the last call."""
        async with self.sessions() as session:
            rows = (await session.execute(select(registry_outbox.c.payload).order_by(registry_outbox.c.position))).all()
        new = rows[self.seen :]
        self.seen = len(rows)
        return [decode_event(row.payload).data for row in new]


@pytest.fixture
async def registry(database_url: str) -> AsyncIterator[Registry]:
    await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE)
    engine = create_engine(database_url)
    found = Registry(session_factory(engine))
    async with transaction(found.sessions) as session:
        session.add(Firm(id=found.firm_id, name="Alerting firm"))
        await session.flush()
        session.add(
            Accountant(id=found.owner, firm_id=found.firm_id, email="o@al.example", display_name="O", role="owner")
        )
        session.add(
            Accountant(id=found.staff, firm_id=found.firm_id, email="s@al.example", display_name="S", role="staff")
        )
        session.add(
            Client(
                id=found.client_id,
                firm_id=found.firm_id,
                name="Client",
                client_url="https://businesscentral.dynamics.com/t.example/Production",
                tenant="t.example",
                tenant_id=uuid.uuid4(),
                environment="Production",
                source="manual",
            )
        )
    try:
        yield found
    finally:
        await engine.dispose()


async def test_failing_for_more_than_z_hours_starts_on_the_clock_and_ends_at_the_next_read(registry: Registry) -> None:
    await registry.rule(registry.owner, figure="failing_hours", comparison="above", threshold=Decimal(6))
    failed = RefreshFailed(
        refresh_id=uuid.uuid4(),
        client_id=registry.client_id,
        failure=Failure(kind=FailureKind.TIMEOUT, summary="s", fix="f", occurred_at=T0),
    )
    for _ in range(2):  # failing again does not move its start
        async with transaction(registry.sessions) as session:
            envelope = new_envelope(failed, firm_id=registry.firm_id, actor=Actor.service("fetcher"))
            await alerts.on_refresh_failed(session=session, failed=envelope)
    await registry.new_events()

    async def check(at: datetime) -> list[EventData]:
        async with transaction(registry.sessions) as session:
            await alerts.check_failures(session=session, now=at, correlation_id="tick")
        return await registry.new_events()

    assert await check(T0 + timedelta(hours=6)) == []
    [raised] = await check(T0 + timedelta(hours=6, minutes=1))
    assert isinstance(raised, AlertRaised)
    assert (raised.company_id, raised.value, raised.recipient.language) == (None, Decimal("6.02"), "de")
    assert await check(T0 + timedelta(hours=30)) == []  # the same episode
    # Any company read successfully ends the client's failure, and its episode.
    await registry.snapshot("5", T0 + timedelta(hours=31))
    [resolved] = await registry.new_events()
    assert isinstance(resolved, AlertResolved) and resolved.episode_id == raised.episode_id
    assert await check(T0 + timedelta(hours=40)) == []


async def test_an_older_snapshot_changes_no_episode(registry: Registry) -> None:
    await registry.rule(registry.owner, figure="cash", comparison="below", threshold=Decimal(100))
    await registry.new_events()
    assert await registry.snapshot("50", T0 + timedelta(hours=2)) == 1
    assert await registry.snapshot("500", T0 + timedelta(hours=1)) == 0  # read before: overtaken
    assert await registry.snapshot("50", T0 + timedelta(hours=2)) == 0  # the same one again
    assert [type(event) for event in await registry.new_events()] == [AlertRaised]
    # Made with the card's newer cash accounts: evaluated though read before; then figures
    # made with the older numbers, read later, change nothing.
    assert await registry.snapshot("500", T0 + timedelta(hours=1), accounts_revision=1) == 1
    assert await registry.snapshot("50", T0 + timedelta(hours=3)) == 0
    assert [type(event) for event in await registry.new_events()] == [AlertResolved]


async def test_a_daily_digest_lists_the_episodes_since_the_last_once(registry: Registry) -> None:
    await registry.rule(
        registry.owner,
        figure="cash",
        comparison="below",
        threshold=Decimal(100),
        delivery="daily_digest",
        digest_at=time(8, 0),
        time_zone="Europe/Amsterdam",
    )
    await registry.snapshot("50", datetime.now(UTC))
    await registry.snapshot("500", datetime.now(UTC) + timedelta(seconds=1))
    await registry.snapshot("40", datetime.now(UTC) + timedelta(seconds=2))
    events = await registry.new_events()
    raised = [event for event in events if isinstance(event, AlertRaised)]
    assert [event.delivery for event in raised] == ["daily_digest", "daily_digest"]

    async def digests(at: datetime) -> list[AlertDigestDue]:
        async with transaction(registry.sessions) as session:
            await alerts.send_due_digests(session=session, now=at, correlation_id="tick")
        return [event for event in await registry.new_events() if isinstance(event, AlertDigestDue)]

    tomorrow = datetime.now(UTC) + timedelta(days=1, hours=1)
    [digest] = await digests(tomorrow)
    assert [episode.episode_id for episode in digest.episodes] == [event.episode_id for event in raised]
    assert digest.episodes[0].ended_at is not None and digest.episodes[1].ended_at is None
    assert await digests(tomorrow + timedelta(hours=1)) == []  # today's is sent
    assert await digests(tomorrow + timedelta(days=1)) == []  # nothing new to list: no mail


class Receiver:
    """Answers each POST with the next status of ``answers`` (with a Retry-After, when a
    status comes with one) and keeps what it got."""

    def __init__(self, answers: list[int | tuple[int, str]]) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        received, pending = self.received, list(answers)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                answer = pending.pop(0)
                status, retry_after = answer if isinstance(answer, tuple) else (answer, None)
                self.send_response(status)
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


async def _post(
    http: httpx.AsyncClient, delivery: AlertWebhookDelivery, secret: str, now: datetime
) -> webhooks.Attempt:
    """One POST of a claimed delivery, as the registry's sender makes it."""
    return await webhooks.post(
        http,
        delivery.url,
        body=delivery.body.encode(),
        secret=secret,
        event_id=str(delivery.id),
        event_type="AlertRaised",
        timestamp=int(now.timestamp()),
        allow_loopback=True,
        timeout_seconds=5,
        firm="f",
    )


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    receiving = Receiver([getattr(request, "param", 503), 204])
    try:
        yield receiving
    finally:
        receiving.server.shutdown()
        receiving.server.server_close()


def _hooked_rule(registry: Registry, url: str, threshold: Decimal, *, email: bool = True) -> SetAlertRule:
    """The owner's rule for every client, "cash below ``threshold``", posted to ``url``."""
    fields = AlertRuleFields(
        name="Hooked", figure="cash", comparison="below", threshold=threshold, email=email, webhook_url=url
    )
    return SetAlertRule(
        firm_id=registry.firm_id, actor=registry.actor(registry.owner), correlation_id="test", rule=fields
    )


# 401 and 403: a receiver that does not hold the rule's new secret yet.
@pytest.mark.parametrize("receiver", [503, 401, 403], indirect=True, ids=["503", "401", "403"])
async def test_a_webhook_answered_503_or_unauthorized_is_sent_again_after_its_back_off_then_delivered(
    registry: Registry, receiver: Receiver
) -> None:
    command = _hooked_rule(registry, f"http://127.0.0.1:{receiver.port}/hook", Decimal(100), email=False)
    webhook_refused = await alerts.check_webhook_host(command, SETTINGS)
    async with transaction(registry.sessions) as session:
        saved = await alerts.set_alert_rule(
            session=session, command=command, settings=SETTINGS, webhook_refused=webhook_refused
        )
    assert saved.webhook_secret is not None
    await registry.snapshot("1", T0)

    async with httpx.AsyncClient() as http:

        async def attempt(now: datetime) -> list[webhooks.Attempt]:
            async with transaction(registry.sessions) as session:
                due = await alerts.claim_due_deliveries(session=session, now=now, hold=timedelta(seconds=30))
                secrets = {d.id: await alerts.secret_of(session, d, SETTINGS) for d in due}
            outcomes = []
            for delivery in due:
                secret = secrets[delivery.id]
                assert secret is not None and secret == saved.webhook_secret
                outcome = await _post(http, delivery, secret, now)
                async with transaction(registry.sessions) as session:
                    await alerts.record_attempt(
                        session=session, delivery_id=delivery.id, attempt=outcome, now=now, settings=SETTINGS
                    )
                outcomes.append(outcome)
            return outcomes

        now = datetime.now(UTC)
        assert [a.outcome for a in await attempt(now)] == [webhooks.Outcome.TRANSIENT]
        # Waiting for its next try, with the receiver's answer, in the rule's list.
        waiting = (await _listed_rules(registry))[0].webhook_deliveries
        assert waiting is not None and (waiting.waiting, waiting.delivered, waiting.given_up) == (1, 0, 0)
        assert waiting.last_error
        assert await attempt(now + timedelta(seconds=29)) == []  # backing off
        assert [a.outcome for a in await attempt(now + timedelta(seconds=31))] == [webhooks.Outcome.DELIVERED]
        assert await attempt(now + timedelta(days=1)) == []  # delivered: never again

    async with registry.sessions() as session:
        [delivery] = (await session.execute(select(AlertWebhookDelivery))).scalars().all()
    assert (delivery.attempts, delivery.delivered_at is not None) == (2, True)
    delivered = (await _listed_rules(registry))[0].webhook_deliveries
    assert delivered is not None and (delivered.waiting, delivered.delivered, delivered.given_up) == (0, 1, 0)
    assert delivered.last_delivered_at == delivery.delivered_at and delivered.last_error is None
    # Both tries carried the same idempotency key, each signed over its own timestamp.
    for headers, body in receiver.received:
        assert headers["idempotency-key"] == str(delivery.id)
        signed = f"{headers['x-hub-timestamp']}.".encode() + body
        expected = hmac.new(saved.webhook_secret.encode(), signed, hashlib.sha256).hexdigest()
        assert headers["x-hub-signature"] == f"sha256={expected}"


@pytest.mark.parametrize("receiver", [(429, "600")], indirect=True, ids=["429"])
async def test_a_receiver_that_says_when_to_come_back_is_not_asked_sooner(
    registry: Registry, receiver: Receiver
) -> None:
    hook: dict[str, Any] = {"figure": "cash", "comparison": "below", "threshold": Decimal(100), "email": False}
    saved = await registry.save(registry.owner, webhook_url=f"http://127.0.0.1:{receiver.port}/hook", **hook)
    assert saved.webhook_secret is not None
    await registry.snapshot("1", T0)
    now = datetime.now(UTC)
    async with httpx.AsyncClient() as http:
        for at in (now, now + timedelta(seconds=31), now + timedelta(seconds=601)):
            async with transaction(registry.sessions) as session:
                due = await alerts.claim_due_deliveries(session=session, now=at, hold=timedelta(seconds=30))
            if at == now + timedelta(seconds=31):
                assert due == [], "asked again before the 600 s the receiver asked for"
                continue
            [delivery] = due
            attempt = await _post(http, delivery, saved.webhook_secret, at)
            async with transaction(registry.sessions) as session:
                await alerts.record_attempt(
                    session=session, delivery_id=delivery.id, attempt=attempt, now=at, settings=SETTINGS
                )
    assert len(receiver.received) == 2  # refused once, then delivered once it was time


@pytest.mark.parametrize("receiver", [404, 410], indirect=True, ids=["404", "410"])
async def test_a_webhook_answered_another_4xx_is_given_up_at_once(registry: Registry, receiver: Receiver) -> None:
    hook: dict[str, Any] = {"figure": "cash", "comparison": "below", "threshold": Decimal(100), "email": False}
    saved = await registry.save(registry.owner, webhook_url=f"http://127.0.0.1:{receiver.port}/hook", **hook)
    await registry.snapshot("1", T0)
    now = datetime.now(UTC)
    async with transaction(registry.sessions) as session:
        [delivery] = await alerts.claim_due_deliveries(session=session, now=now, hold=timedelta(seconds=30))
        secret = await alerts.secret_of(session, delivery, SETTINGS)
    assert secret is not None and secret == saved.webhook_secret
    async with httpx.AsyncClient() as http:
        attempt = await _post(http, delivery, secret, now)
    assert attempt.outcome is webhooks.Outcome.PERMANENT
    async with transaction(registry.sessions) as session:
        await alerts.record_attempt(
            session=session, delivery_id=delivery.id, attempt=attempt, now=now, settings=SETTINGS
        )
        assert (
            await alerts.claim_due_deliveries(session=session, now=now + timedelta(days=1), hold=timedelta(seconds=1))
            == []
        )
    # The rule's list says so, with the receiver's answer, so the firm need not read logs.
    [listed] = await _listed_rules(registry)
    assert listed.webhook_deliveries is not None
    assert (listed.webhook_deliveries.delivered, listed.webhook_deliveries.waiting) == (0, 0)
    assert listed.webhook_deliveries.given_up == 1
    assert any(code in (listed.webhook_deliveries.last_error or "") for code in ("404", "410"))


async def test_each_webhook_rule_says_its_own_newest_error_however_many_another_has(registry: Registry) -> None:
    hook: dict[str, Any] = {"figure": "cash", "comparison": "below", "threshold": Decimal(1), "email": False}
    busy = await registry.rule(registry.owner, webhook_url="http://127.0.0.1:9/busy", **hook)
    quiet = await registry.rule(registry.owner, webhook_url="http://127.0.0.1:9/quiet", **hook)

    def failed(rule_id: uuid.UUID, url: str, at: datetime, error: str) -> AlertWebhookDelivery:
        return AlertWebhookDelivery(
            id=uuid.uuid4(),
            firm_id=registry.firm_id,
            rule_id=rule_id,
            url=url,
            body="{}",
            attempts=1,
            next_attempt_at=at,
            last_error=error,
        )

    async with transaction(registry.sessions) as session:
        for number in range(30):
            at = T0 + timedelta(hours=2, minutes=number)
            session.add(failed(busy, "http://127.0.0.1:9/busy", at, f"busy {number}"))
        for at, error in ((T0, "quiet older"), (T0 + timedelta(minutes=5), "quiet newest")):
            session.add(failed(quiet, "http://127.0.0.1:9/quiet", at, error))
    listed = {rule.rule_id: rule.webhook_deliveries for rule in await _listed_rules(registry)}
    busy_deliveries, quiet_deliveries = listed[busy], listed[quiet]
    assert busy_deliveries is not None and quiet_deliveries is not None
    assert (busy_deliveries.waiting, busy_deliveries.last_error) == (30, "busy 29")
    assert (quiet_deliveries.waiting, quiet_deliveries.last_error) == (2, "quiet newest")


async def test_a_rule_saved_with_a_zero_of_any_exponent_before_they_were_refused_still_lists(
    registry: Registry,
) -> None:
    """0e999999999999999999 was a valid threshold until numbers were held to exponents within
    28: a rule stored with it lists (as 0) instead of failing the firm's whole list."""
    rule = await registry.rule(registry.owner, figure="cash", comparison="below", threshold=Decimal(1))
    async with transaction(registry.sessions) as session:
        row = await session.get(AlertRuleRow, rule)
        assert row is not None
        row.threshold = "0E+999999999999999999"
    [listed] = [r for r in await _listed_rules(registry) if r.rule_id == rule]
    assert listed.threshold == 0


async def _listed_rules(registry: Registry) -> list[AlertRuleView]:
    async with transaction(registry.sessions) as session:
        command = ListAlertRules(firm_id=registry.firm_id, actor=registry.actor(registry.owner), correlation_id="l")
        return (await alerts.list_alert_rules(session=session, command=command)).rules


async def test_staff_manage_their_own_rules_and_owners_every_rule_of_the_firm(registry: Registry) -> None:
    owners = await registry.rule(registry.owner, figure="cash", comparison="below", threshold=Decimal(1))
    staffs = await registry.rule(registry.staff, figure="cash", comparison="below", threshold=Decimal(2))

    async def listed(accountant: uuid.UUID) -> set[uuid.UUID]:
        async with transaction(registry.sessions) as session:
            command = ListAlertRules(firm_id=registry.firm_id, actor=registry.actor(accountant), correlation_id="l")
            return {rule.rule_id for rule in (await alerts.list_alert_rules(session=session, command=command)).rules}

    assert await listed(registry.owner) == {owners, staffs}
    assert await listed(registry.staff) == {staffs}
    with pytest.raises(CommandRejected) as refused:
        async with transaction(registry.sessions) as session:
            command = RemoveAlertRule(
                firm_id=registry.firm_id, actor=registry.actor(registry.staff), correlation_id="r", rule_id=owners
            )
            await alerts.remove_alert_rule(session=session, command=command)
    assert refused.value.rejection.reason == "not_found"
    async with transaction(registry.sessions) as session:
        command = RemoveAlertRule(
            firm_id=registry.firm_id, actor=registry.actor(registry.owner), correlation_id="r", rule_id=staffs
        )
        await alerts.remove_alert_rule(session=session, command=command)
    assert await listed(registry.staff) == set()


async def test_a_removed_client_ends_its_alerts_and_takes_its_own_rules_along(registry: Registry) -> None:
    own = await registry.rule(registry.owner, figure="cash", comparison="below", threshold=Decimal(100))
    every = await registry.rule(
        registry.owner, client_id=None, figure="cash", comparison="below", threshold=Decimal(100)
    )
    await registry.snapshot("5", T0)
    raised = [event for event in await registry.new_events() if isinstance(event, AlertRaised)]
    assert {event.rule_id for event in raised} == {own, every}
    async with transaction(registry.sessions) as session:
        await clients.remove_client(
            session=session,
            command=RemoveClient(
                firm_id=registry.firm_id,
                actor=registry.actor(registry.owner),
                correlation_id="rm",
                client_id=registry.client_id,
            ),
        )
    events = await registry.new_events()
    ended = {
        event.episode_id for event in events if isinstance(event, AlertResolved) and event.reason == "client_removed"
    }
    assert ended == {event.episode_id for event in raised}
    assert [event.rule_id for event in events if isinstance(event, AlertRuleRemoved)] == [own]


async def _remove_client(registry: Registry, client_id: uuid.UUID) -> None:
    async with transaction(registry.sessions) as session:
        await clients.remove_client(
            session=session,
            command=RemoveClient(
                firm_id=registry.firm_id, actor=registry.actor(registry.owner), correlation_id="rm", client_id=client_id
            ),
        )


async def test_a_removed_clients_late_snapshot_or_failure_raises_nothing(registry: Registry) -> None:
    """A refresh on its way when the client was removed still ends: its snapshot or failure,
    handled after the removal, raises no alert under a rule for every client."""
    await registry.rule(registry.owner, client_id=None, figure="cash", comparison="below", threshold=Decimal(100))
    await registry.rule(
        registry.owner, client_id=None, figure="failing_hours", comparison="above", threshold=Decimal(1)
    )
    await _remove_client(registry, registry.client_id)
    await registry.new_events()
    assert await registry.snapshot("5", T0) == 0
    await registry.failed(T0)
    assert await registry.check_failures(T0 + timedelta(hours=5)) == []
    assert [event for event in await registry.new_events() if isinstance(event, AlertRaised)] == []


@pytest.mark.parametrize("database_url", POSTGRESQL_ONLY, indirect=True)
async def test_a_client_removed_while_its_snapshot_is_evaluated_leaves_no_alert_open(
    database_url: str, registry: Registry
) -> None:
    """On two replicas at once: the evaluation of a snapshot that breaks a rule for every
    client, and the client's removal (which locks only the client's own rules). Whichever
    commits first, no alert about the removed client stays open."""
    await registry.rule(registry.owner, client_id=None, figure="cash", comparison="below", threshold=Decimal(100))
    for attempt in range(5):
        client_id = await registry.another_client()
        await asyncio.gather(
            registry.snapshot("10.00", T0 + timedelta(hours=attempt + 1), client_id),
            _remove_client(registry, client_id),
        )
        async with registry.sessions() as session:
            open_episodes = (
                await session.execute(
                    select(func.count())
                    .select_from(AlertEpisodeRow)
                    .where(col(AlertEpisodeRow.client_id) == client_id, col(AlertEpisodeRow.ended_at).is_(None))
                )
            ).scalar_one()
        assert open_episodes == 0, attempt


async def test_a_removed_clients_alerts_are_left_out_of_the_digest(registry: Registry) -> None:
    digest: dict[str, Any] = {"delivery": "daily_digest", "digest_at": time(8, 0), "time_zone": "UTC"}
    await registry.rule(
        registry.owner, client_id=None, figure="cash", comparison="below", threshold=Decimal(100), **digest
    )
    other = await registry.another_client()
    now = datetime.now(UTC)
    await registry.snapshot("5", now)
    await registry.snapshot("6", now, other)
    await _remove_client(registry, other)
    [sent] = await registry.digests(now + timedelta(days=1, hours=1))
    assert [episode.client_name for episode in sent.episodes] == ["Client"]


async def test_a_digest_rules_new_condition_mails_the_waiting_alerts_as_they_were(registry: Registry) -> None:
    """A digest names its rule's figure and threshold: alerts waiting for it when the
    condition changes are mailed at once, under the condition they were raised on."""
    digest: dict[str, Any] = {"delivery": "daily_digest", "digest_at": time(8, 0), "time_zone": "UTC"}
    rule_id = await registry.rule(registry.owner, figure="cash", comparison="below", threshold=Decimal(100), **digest)
    now = datetime.now(UTC)
    await registry.snapshot("50", now)
    await registry.new_events()
    await registry.save(registry.owner, rule_id, figure="cash", comparison="below", threshold=Decimal(10), **digest)
    [sent] = [event for event in await registry.new_events() if isinstance(event, AlertDigestDue)]
    assert (sent.figure, sent.threshold) == ("cash", Decimal(100))
    assert [episode.value for episode in sent.episodes] == [Decimal(50)]
    # Listed once: the next digest has nothing left to say about it.
    assert await registry.digests(now + timedelta(days=1, hours=1)) == []


async def test_a_webhook_not_tried_for_the_firms_busy_lookups_keeps_its_attempts(registry: Registry) -> None:
    """The hub's own hold-up (the firm's name lookups all still running) is not one of the
    receiver's attempts: a healthy receiver is not given up for a colleague's slow host."""
    hook: dict[str, Any] = {"figure": "cash", "comparison": "below", "threshold": Decimal(100), "email": False}
    await registry.save(registry.owner, webhook_url="http://127.0.0.1:9/hook", **hook)
    await registry.snapshot("1", T0)
    now = datetime.now(UTC)
    deferred = webhooks.Attempt(webhooks.Outcome.DEFERRED, "the host's name was not looked up yet: busy")
    for round_number in range(SETTINGS.alert_webhook_max_attempts + 2):
        at = now + timedelta(minutes=round_number)
        async with transaction(registry.sessions) as session:
            [delivery] = await alerts.claim_due_deliveries(session=session, now=at, hold=timedelta(seconds=30))
            await alerts.record_attempt(
                session=session, delivery_id=delivery.id, attempt=deferred, now=at, settings=SETTINGS
            )
    async with registry.sessions() as session:
        row = await session.get(AlertWebhookDelivery, delivery.id)
    assert row is not None
    assert (row.attempts, row.failed_at, row.last_error) == (0, None, deferred.detail)
    assert row.next_attempt_at == at + timedelta(seconds=SETTINGS.alert_webhook_retry_seconds)


async def test_an_https_webhook_is_posted_to_the_address_checked_with_its_host_name_for_tls() -> None:
    """The POST goes to the resolved address, yet TLS verifies the certificate of the name."""
    authority = trustme.CA()
    certificate = authority.issue_cert("localhost")
    received: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(server_context)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    try:
        async with httpx.AsyncClient(verify=client_context) as http:
            attempt = await webhooks.post(
                http,
                f"https://localhost:{server.server_address[1]}/hook",
                body=b"{}",
                secret="whsec_x",
                event_id="e1",
                event_type="AlertRaised",
                timestamp=1,
                allow_loopback=True,
                timeout_seconds=5,
                firm="f",
            )
    finally:
        server.shutdown()
        server.server_close()
    assert attempt.outcome is webhooks.Outcome.DELIVERED, attempt.detail
    assert received[0]["host"] == f"localhost:{server.server_address[1]}"


async def test_a_firm_keeps_a_bounded_number_of_rules(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerts, "MAX_RULES_PER_FIRM", 2)
    first = await registry.rule(registry.owner, figure="cash", comparison="below", threshold=Decimal(1))
    await registry.rule(registry.staff, figure="cash", comparison="below", threshold=Decimal(2))
    with pytest.raises(CommandRejected) as refused:
        await registry.rule(registry.owner, figure="cash", comparison="below", threshold=Decimal(3))
    assert refused.value.rejection.reason == "conflict"
    async with transaction(registry.sessions) as session:
        command = RemoveAlertRule(
            firm_id=registry.firm_id, actor=registry.actor(registry.owner), correlation_id="r", rule_id=first
        )
        await alerts.remove_alert_rule(session=session, command=command)
    await registry.rule(registry.owner, figure="cash", comparison="below", threshold=Decimal(3))


async def _live_rules(registry: Registry) -> list[AlertRuleRow]:
    async with transaction(registry.sessions) as session:
        found = await session.execute(
            select(AlertRuleRow).where(
                col(AlertRuleRow.firm_id) == registry.firm_id, col(AlertRuleRow.removed_at).is_(None)
            )
        )
        return list(found.scalars())


async def test_a_new_rule_asked_again_under_its_idempotency_key_is_the_same_rule(registry: Registry) -> None:
    """A save whose answer was lost, asked again: the rule it saved, with the secret the lost
    answer carried, and one AlertRuleSet; another accountant's same key is their own."""
    hook: dict[str, Any] = {
        "figure": "cash",
        "comparison": "below",
        "threshold": Decimal(10),
        "webhook_url": "http://127.0.0.1:9/h",
    }
    first = await registry.save(registry.owner, creation_key="form-1", **hook)
    again = await registry.save(registry.owner, creation_key="form-1", **hook)
    assert again == first and first.webhook_secret is not None
    assert [type(event) for event in await registry.new_events() if isinstance(event, AlertRuleSet)] == [AlertRuleSet]
    staffs = await registry.save(registry.staff, creation_key="form-1", **hook)
    assert staffs.rule_id != first.rule_id
    assert len(await _live_rules(registry)) == 2
    with pytest.raises(CommandRejected) as refused:
        await registry.save(registry.owner, creation_key="form-1", **{**hook, "threshold": Decimal(11)})
    assert refused.value.rejection.reason == "invalid"
    assert "another rule" in refused.value.rejection.message
    # Changed since: the rule is still the answer, but its secret is no longer the lost
    # answer's to give (someone has seen the rule since).
    await registry.save(registry.owner, first.rule_id, name="Renamed", **hook)
    assert await registry.save(registry.owner, creation_key="form-1", **hook) == AlertRuleSaved(rule_id=first.rule_id)
    await registry.remove(first.rule_id)
    with pytest.raises(CommandRejected) as gone:
        await registry.save(registry.owner, creation_key="form-1", **hook)
    assert gone.value.rejection.reason == "conflict"
    assert [rule.id for rule in await _live_rules(registry)] == [staffs.rule_id]


async def test_a_save_asked_again_at_the_firms_bound_still_answers_its_rule(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alerts, "MAX_RULES_PER_FIRM", 1)
    asked: dict[str, Any] = {"figure": "cash", "comparison": "below", "threshold": Decimal(1)}
    first = await registry.save(registry.owner, creation_key="k", **asked)
    assert await registry.save(registry.owner, creation_key="k", **asked) == first


@pytest.mark.parametrize("database_url", POSTGRESQL_ONLY, indirect=True)
async def test_one_rule_for_a_save_asked_twice_at_once(database_url: str, registry: Registry) -> None:
    """Two replicas taking the same ask at once: one rule, and both answer it."""
    asked: dict[str, Any] = {"figure": "cash", "comparison": "below", "threshold": Decimal(1)}
    answers = await asyncio.gather(*(registry.save(registry.owner, creation_key="twice", **asked) for _ in range(4)))
    assert len({answer.rule_id for answer in answers}) == 1, answers
    assert len(await _live_rules(registry)) == 1


@pytest.mark.parametrize("database_url", POSTGRESQL_ONLY, indirect=True)
async def test_rules_defined_at_once_stay_within_the_firms_bound(
    database_url: str, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replicas defining a firm's rules at once: each counts the others' before its own."""
    monkeypatch.setattr(alerts, "MAX_RULES_PER_FIRM", 3)
    outcomes = await asyncio.gather(
        *(
            registry.rule(registry.owner, figure="cash", comparison="below", threshold=Decimal(number))
            for number in range(6)
        ),
        return_exceptions=True,
    )
    refusals = [outcome for outcome in outcomes if isinstance(outcome, CommandRejected)]
    assert [refusal.rejection.reason for refusal in refusals] == ["conflict"] * 3, outcomes


async def test_no_webhook_rule_without_a_real_secret_key_outside_dev_mode(registry: Registry) -> None:
    insecure = RegistrySettings(
        mode=Mode.PRODUCTION, secret_key=SecretStr(DEV_SECRET_KEY), alert_webhook_allow_loopback=True
    )
    command = _hooked_rule(registry, "http://127.0.0.1:9/hook", Decimal(1))
    webhook_refused = await alerts.check_webhook_host(command, insecure)
    async with transaction(registry.sessions) as session:
        with pytest.raises(CommandRejected) as refused:
            await alerts.set_alert_rule(
                session=session, command=command, settings=insecure, webhook_refused=webhook_refused
            )
    assert (refused.value.rejection.reason, refused.value.rejection.field) == ("unavailable", "webhook_url")


# ---------------------------------------------------------------- failing for more than


async def test_a_failure_of_a_client_no_failing_rule_watches_is_not_counted_by_a_rule_added_later(
    registry: Registry,
) -> None:
    watched = await registry.another_client()
    await registry.rule(registry.owner, client_id=watched, figure="failing_hours", comparison="above", threshold=6)
    # The client no "failing for more than" rule watches fails, then reads fine.
    await registry.failed(T0)
    await registry.snapshot("5", T0 + timedelta(hours=1))
    # A rule for every client, added much later, counts from no failure of the past.
    await registry.rule(registry.owner, client_id=None, figure="failing_hours", comparison="above", threshold=6)
    await registry.new_events()
    assert await registry.check_failures(T0 + timedelta(hours=30)) == []


async def test_a_success_ends_a_failure_even_where_no_rule_looks(registry: Registry) -> None:
    # A row left behind (before this was fixed) for a client no rule watches at all.
    async with transaction(registry.sessions) as session:
        session.add(
            AlertFailureRow(
                client_id=registry.client_id, company_key="client", firm_id=registry.firm_id, failing_since=T0
            )
        )
    assert await registry.snapshot("5", T0 + timedelta(hours=1)) == 0
    async with registry.sessions() as session:
        assert (await session.execute(select(AlertFailureRow))).scalars().all() == []


async def test_a_failure_handled_after_a_later_success_starts_nothing(registry: Registry) -> None:
    await registry.rule(registry.owner, figure="failing_hours", comparison="above", threshold=6)
    await registry.snapshot("5", T0 + timedelta(hours=1))
    await registry.failed(T0)  # older than the read already evaluated: over
    await registry.new_events()
    assert await registry.check_failures(T0 + timedelta(hours=12)) == []
    # A failure after the last read counts, and a read older than it does not end it.
    await registry.failed(T0 + timedelta(hours=2))
    await registry.snapshot("5", T0 + timedelta(minutes=90))
    [raised] = await registry.check_failures(T0 + timedelta(hours=9))
    assert raised.value == Decimal("7.00")


async def test_an_older_read_handled_late_does_not_end_a_failure_that_came_after_it(registry: Registry) -> None:
    """Snapshots and failures come on separate streams: after an outage their backlogs may
    be handled out of order. The read from before the failure ended its alert, falsely,
    and the next check raised it again."""
    await registry.rule(registry.owner, figure="failing_hours", comparison="above", threshold=6)
    await registry.failed(T0 + timedelta(hours=2))
    [raised] = await registry.check_failures(T0 + timedelta(hours=30))
    await registry.snapshot("5", T0 + timedelta(hours=1))  # read before the failure
    assert not [event for event in await registry.new_events() if isinstance(event, AlertResolved)]
    assert await registry.check_failures(T0 + timedelta(hours=31)) == []  # still open: not raised again
    await registry.snapshot("5", T0 + timedelta(hours=32))  # a read after it ends it
    [resolved] = [event for event in await registry.new_events() if isinstance(event, AlertResolved)]
    assert resolved.episode_id == raised.episode_id and resolved.reason == "no_longer_holds"


async def test_a_company_gone_from_bc_ends_its_alerts_and_its_older_reads_raise_none(registry: Registry) -> None:
    """A full discovery no longer lists the company (deleted in BC, or the hub's access to
    it withdrawn): its alerts stayed open for good, and its failure raised a false
    "failing" alert a day later."""
    await registry.rule(registry.owner, figure="cash", comparison="below", threshold=10)
    await registry.rule(registry.owner, figure="failing_hours", comparison="above", threshold=6)
    await registry.snapshot("5", T0)
    [raised] = [event for event in await registry.new_events() if isinstance(event, AlertRaised)]
    still_there = uuid.uuid4()
    await registry.discovered(registry.company_id, still_there, at=T0 + timedelta(hours=1))
    assert await registry.new_events() == []  # listed: nothing ends
    await registry.discovered(still_there, at=T0 + timedelta(hours=2))
    [ended] = await registry.new_events()
    assert isinstance(ended, AlertResolved)
    assert (ended.episode_id, ended.reason) == (raised.episode_id, "company_gone")
    await registry.snapshot("5", T0 + timedelta(minutes=90))  # read before the discovery, handled late
    assert await registry.new_events() == []
    await registry.snapshot("5", T0 + timedelta(hours=3))  # back in BC, and read since: it counts
    assert [type(event) for event in await registry.new_events()] == [AlertRaised]


async def test_what_a_refresh_asked_for_before_the_card_changed_says_is_history(registry: Registry) -> None:
    """A refresh of the place the card named before a move (or read with its old account
    numbers), still under way or tried again after the change: its snapshot raised alerts
    for companies no longer the client's, its discovery ended the new ones' alerts, and its
    failure started a "failing" alert."""
    await registry.rule(registry.owner, figure="cash", comparison="below", threshold=10)
    await registry.rule(registry.owner, figure="failing_hours", comparison="above", threshold=6)
    async with transaction(registry.sessions) as session:
        client = await session.get(Client, registry.client_id)
        assert client is not None
        client.accounts_revision = client.moved_revision = 1  # the card moved
    await registry.snapshot("5", T0, accounts_revision=1)
    [raised] = [event for event in await registry.new_events() if isinstance(event, AlertRaised)]
    await registry.snapshot("5", T0 + timedelta(hours=1))  # the old place's
    await registry.discovered(uuid.uuid4(), at=T0 + timedelta(hours=1))  # lists only the old place's
    await registry.failed(T0 + timedelta(hours=1))
    assert await registry.new_events() == []
    assert await registry.check_failures(T0 + timedelta(hours=30)) == []
    await registry.discovered(uuid.uuid4(), at=T0 + timedelta(hours=2), accounts_revision=1)  # the new place's
    [ended] = await registry.new_events()
    assert isinstance(ended, AlertResolved) and ended.episode_id == raised.episode_id


async def test_a_read_made_with_older_account_numbers_still_counts_as_a_read(registry: Registry) -> None:
    """Renumbered before the registry handled them: a refresh's read of the company (its
    figures not evaluated) came before another refresh's earlier failure, which then stood
    alone and raised a false "failing" alert."""
    await registry.rule(registry.owner, figure="failing_hours", comparison="above", threshold=6)
    async with transaction(registry.sessions) as session:
        client = await session.get(Client, registry.client_id)
        assert client is not None
        client.accounts_revision = 2  # renumbered; no move
    await registry.snapshot("5", T0 + timedelta(hours=2), accounts_revision=1)
    await registry.failed(T0 + timedelta(hours=1), accounts_revision=1)  # before that read: over
    await registry.new_events()
    assert await registry.check_failures(T0 + timedelta(hours=30)) == []


async def test_a_client_no_longer_watched_loses_its_failure_so_a_new_rule_counts_afresh(registry: Registry) -> None:
    rule_id = await registry.rule(registry.owner, figure="failing_hours", comparison="above", threshold=6)
    await registry.failed(T0)
    await registry.remove(rule_id)
    # While nothing watches it, its reads are not kept: its old failure cannot be trusted.
    await registry.rule(registry.owner, figure="failing_hours", comparison="above", threshold=6)
    await registry.new_events()
    assert await registry.check_failures(T0 + timedelta(hours=30)) == []
    await registry.failed(T0 + timedelta(hours=31))
    [raised] = await registry.check_failures(T0 + timedelta(hours=38))
    assert raised.value == Decimal("7.00")


# ---------------------------------------------------------------- daily digests


DIGEST_RULE: dict[str, Any] = {
    "figure": "cash",
    "comparison": "below",
    "threshold": Decimal(100),
    "delivery": "daily_digest",
    "digest_at": time(8, 0),
    "time_zone": "Europe/Amsterdam",
}


async def test_an_episode_committed_after_a_digest_ran_is_in_the_next_digest(registry: Registry) -> None:
    await registry.rule(registry.owner, **DIGEST_RULE)
    tomorrow = datetime.now(UTC) + timedelta(days=1, hours=1)
    # A digest runs while an episode's start is not committed yet: it cannot see it...
    assert await registry.digests(tomorrow) == []
    # ...which commits with a start before that digest ran.
    await registry.snapshot("50", datetime.now(UTC))
    [raised] = [event for event in await registry.new_events() if isinstance(event, AlertRaised)]
    assert raised.started_at < tomorrow
    [digest] = await registry.digests(tomorrow + timedelta(days=1))
    assert [episode.episode_id for episode in digest.episodes] == [raised.episode_id]
    assert digest.since <= raised.started_at
    assert await registry.digests(tomorrow + timedelta(days=2)) == []  # listed once


async def test_alerts_waiting_for_the_digest_are_mailed_when_the_rule_turns_immediate(registry: Registry) -> None:
    rule_id = await registry.rule(registry.owner, **DIGEST_RULE)
    await registry.snapshot("50", datetime.now(UTC))
    [raised] = [event for event in await registry.new_events() if isinstance(event, AlertRaised)]
    await registry.save(registry.owner, rule_id, **{**DIGEST_RULE, "delivery": "immediate", "digest_at": None})
    [digest] = [event for event in await registry.new_events() if isinstance(event, AlertDigestDue)]
    assert [episode.episode_id for episode in digest.episodes] == [raised.episode_id]
    # Turned back into a digest: nothing is listed twice.
    await registry.save(registry.owner, rule_id, **DIGEST_RULE)
    assert await registry.digests(datetime.now(UTC) + timedelta(days=2)) == []


async def test_a_digest_of_more_episodes_than_one_lists_comes_in_several(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alerts, "DIGEST_PAGE", 2)
    await registry.rule(registry.owner, **DIGEST_RULE)
    start = datetime.now(UTC)
    for step in range(5):  # five episodes: each low read starts one, each high one ends it
        await registry.snapshot("50", start + timedelta(seconds=2 * step))
        await registry.snapshot("500", start + timedelta(seconds=2 * step + 1))
    raised = [event.episode_id for event in await registry.new_events() if isinstance(event, AlertRaised)]
    assert len(raised) == 5
    digests = await registry.digests(start + timedelta(days=1, hours=1))
    assert [len(digest.episodes) for digest in digests] == [2, 2, 1]
    assert [episode.episode_id for digest in digests for episode in digest.episodes] == raised


# ---------------------------------------------------------------- webhook URL changes


async def test_the_audit_stream_names_only_the_webhooks_host(registry: Registry, receiver: Receiver) -> None:
    url = f"http://127.0.0.1:{receiver.port}/services/T000/B000/XXXXtoken?secret=abc"
    await registry.rule(registry.owner, figure="cash", comparison="below", threshold=Decimal(1), webhook_url=url)
    [rule_set] = [event for event in await registry.new_events() if isinstance(event, AlertRuleSet)]
    assert rule_set.webhook_host == f"http://127.0.0.1:{receiver.port}"
    async with registry.sessions() as session:
        payloads = (await session.execute(select(registry_outbox.c.payload))).scalars().all()
    assert not any("XXXXtoken" in str(payload) or "secret=abc" in str(payload) for payload in payloads)


async def test_a_changed_webhook_url_gives_up_what_was_queued_for_the_old_one_and_gets_a_new_secret(
    registry: Registry, receiver: Receiver
) -> None:
    hook: dict[str, Any] = {"figure": "cash", "comparison": "below", "threshold": Decimal(100), "email": False}
    old_url = f"http://127.0.0.1:{receiver.port}/old"
    first = await registry.save(registry.owner, webhook_url=old_url, **hook)
    await registry.snapshot("1", T0)
    async with transaction(registry.sessions) as session:
        # Claimed just before the change: the secret it is signed with is looked up after it.
        now = datetime.now(UTC)
        [claimed] = await alerts.claim_due_deliveries(session=session, now=now, hold=timedelta(seconds=30))
    changed = await registry.save(
        registry.owner, first.rule_id, webhook_url=f"http://127.0.0.1:{receiver.port}/new", **hook
    )
    assert changed.webhook_secret is not None and changed.webhook_secret != first.webhook_secret
    async with transaction(registry.sessions) as session:
        # Never signed with the new receiver's secret, never sent again.
        assert await alerts.secret_of(session, claimed, SETTINGS) is None
        later = now + timedelta(days=1)
        assert await alerts.claim_due_deliveries(session=session, now=later, hold=timedelta(seconds=1)) == []
        await alerts.record_attempt(
            session=session,
            delivery_id=claimed.id,
            attempt=webhooks.Attempt(webhooks.Outcome.PERMANENT, "no secret"),
            now=now,
            settings=SETTINGS,
        )
    async with registry.sessions() as session:
        [given_up] = (await session.execute(select(AlertWebhookDelivery))).scalars().all()
    assert given_up.failed_at is not None and given_up.last_error == alerts.WEBHOOK_URL_CHANGED
    # The same URL saved again keeps its secret: nothing new to hand out.
    again = await registry.save(
        registry.owner, first.rule_id, webhook_url=f"http://127.0.0.1:{receiver.port}/new", **hook
    )
    assert again.webhook_secret is None


async def test_a_webhook_given_a_new_secret_signs_what_is_queued_with_it_only(
    registry: Registry, receiver: Receiver
) -> None:
    """The old secret leaked, or the receiver was rebuilt: the same URL, a new secret, shown
    once; what was still queued is sent on, signed with the new one. The audit log says the
    secret was renewed, never which."""
    hook: dict[str, Any] = {"figure": "cash", "comparison": "below", "threshold": Decimal(100), "email": False}
    url = f"http://127.0.0.1:{receiver.port}/hook"
    first = await registry.save(registry.owner, webhook_url=url, **hook)
    await registry.snapshot("1", T0)
    registry.seen = 0
    renewed = await registry.save(registry.owner, first.rule_id, webhook_url=url, new_webhook_secret=True, **hook)
    assert renewed.webhook_secret is not None and renewed.webhook_secret != first.webhook_secret
    rule_sets = [event for event in await registry.new_events() if isinstance(event, AlertRuleSet)]
    assert [event.webhook_secret_renewed for event in rule_sets] == [False, True]
    async with registry.sessions() as session:
        payloads = (await session.execute(select(registry_outbox.c.payload))).scalars().all()
    secrets = [first.webhook_secret, renewed.webhook_secret]
    assert not any(secret in str(payload) for payload in payloads for secret in secrets if secret)
    async with transaction(registry.sessions) as session:
        [queued] = await alerts.claim_due_deliveries(session=session, now=datetime.now(UTC), hold=timedelta(seconds=30))
        assert queued.failed_at is None, "what was queued is still sent"
        assert await alerts.secret_of(session, queued, SETTINGS) == renewed.webhook_secret
    # Saved again as it is, or asked for a new secret without a webhook: nothing to hand out.
    assert (await registry.save(registry.owner, first.rule_id, webhook_url=url, **hook)).webhook_secret is None
    unhooked = await registry.save(
        registry.owner, first.rule_id, webhook_url=None, new_webhook_secret=True, **(hook | {"email": True})
    )
    assert unhooked.webhook_secret is None
    later = [event for event in await registry.new_events() if isinstance(event, AlertRuleSet)]
    assert [event.webhook_secret_renewed for event in later] == [False, False]


async def test_removing_a_rule_or_its_webhook_gives_up_its_pending_deliveries(
    registry: Registry, receiver: Receiver
) -> None:
    hook: dict[str, Any] = {"figure": "cash", "comparison": "below", "threshold": Decimal(100), "email": True}
    url = f"http://127.0.0.1:{receiver.port}/hook"
    unhooked = await registry.save(registry.owner, webhook_url=url, **hook)
    removed = await registry.save(registry.owner, webhook_url=url, **hook)
    await registry.snapshot("1", T0)
    await registry.save(registry.owner, unhooked.rule_id, webhook_url=None, **hook)
    await registry.remove(removed.rule_id)
    async with registry.sessions() as session:
        deliveries = (await session.execute(select(AlertWebhookDelivery))).scalars().all()
    assert {(delivery.rule_id, delivery.last_error) for delivery in deliveries} == {
        (unhooked.rule_id, alerts.WEBHOOK_URL_CHANGED),
        (removed.rule_id, alerts.WEBHOOK_RULE_REMOVED),
    }
    assert all(delivery.failed_at is not None for delivery in deliveries)


async def test_a_removed_clients_alerts_of_a_rule_for_every_client_are_not_posted(
    registry: Registry, receiver: Receiver
) -> None:
    """The firm removed the client: its figures went on being posted, with retries for hours,
    when the rule watched every client (only a rule for that client alone was given up)."""
    hook: dict[str, Any] = {"figure": "cash", "comparison": "below", "threshold": Decimal(100), "email": False}
    await registry.save(registry.owner, client_id=None, webhook_url=f"http://127.0.0.1:{receiver.port}/hook", **hook)
    await registry.snapshot("1", T0)
    async with transaction(registry.sessions) as session:
        context = Context(firm_id=registry.firm_id, actor=registry.actor(registry.owner), correlation_id="rm")
        await alerts.forget_client(session, context, registry.client_id, now=datetime.now(UTC))
    async with registry.sessions() as session:
        [delivery] = (await session.execute(select(AlertWebhookDelivery))).scalars().all()
    assert delivery.failed_at is not None and delivery.last_error == alerts.WEBHOOK_CLIENT_REMOVED
    async with transaction(registry.sessions) as session:
        assert (
            await alerts.claim_due_deliveries(session=session, now=datetime.now(UTC), hold=timedelta(seconds=30)) == []
        )


async def test_an_alert_posted_just_before_its_url_changed_is_recorded_as_delivered(
    registry: Registry, receiver: Receiver
) -> None:
    hook: dict[str, Any] = {"figure": "cash", "comparison": "below", "threshold": Decimal(100), "email": False}
    first = await registry.save(registry.owner, webhook_url=f"http://127.0.0.1:{receiver.port}/old", **hook)
    await registry.snapshot("1", T0)
    now = datetime.now(UTC)
    async with transaction(registry.sessions) as session:
        [claimed] = await alerts.claim_due_deliveries(session=session, now=now, hold=timedelta(seconds=30))
        assert await alerts.secret_of(session, claimed, SETTINGS) == first.webhook_secret
    # The POST is out, signed for the old URL, as the URL changes: it got there all the same.
    await registry.save(registry.owner, first.rule_id, webhook_url=f"http://127.0.0.1:{receiver.port}/new", **hook)
    async with transaction(registry.sessions) as session:
        await alerts.record_attempt(
            session=session,
            delivery_id=claimed.id,
            attempt=webhooks.Attempt(webhooks.Outcome.DELIVERED, "204"),
            now=now,
            settings=SETTINGS,
        )
    async with registry.sessions() as session:
        [delivery] = (await session.execute(select(AlertWebhookDelivery))).scalars().all()
    assert (delivery.delivered_at, delivery.failed_at, delivery.last_error) == (now, None, None)


async def _remove_staff(registry: Registry) -> ColleagueRemoved:
    async with transaction(registry.sessions) as session:
        return await firms.remove_colleague(
            session=session,
            command=RemoveColleague(
                firm_id=registry.firm_id,
                actor=registry.actor(registry.owner),
                correlation_id="leaves",
                accountant_id=registry.staff,
            ),
        )


async def test_a_removed_colleagues_rules_go_and_a_rule_left_behind_alerts_no_one(registry: Registry) -> None:
    """Their rules mail them and may post the firm's figures to a URL they chose: removed
    with them, open alerts ended. A rule saved as the removal happened (past its look for
    rules) raises nothing and mails no digest."""
    own = await registry.rule(registry.staff, figure="cash", comparison="below", threshold=Decimal(100))
    await registry.snapshot("5", T0)
    [raised] = [event for event in await registry.new_events() if isinstance(event, AlertRaised)]
    removed = await _remove_staff(registry)
    assert (removed.alert_rules_removed, removed.clients_unassigned) == (1, 0)
    events = await registry.new_events()
    assert [e.episode_id for e in events if isinstance(e, AlertResolved) and e.reason == "rule_removed"] == [
        raised.episode_id
    ]
    assert [e.rule_id for e in events if isinstance(e, AlertRuleRemoved)] == [own]

    async with transaction(registry.sessions) as session:
        session.add(
            AlertRuleRow(
                firm_id=registry.firm_id,
                owner_accountant_id=registry.staff,
                name="Saved as they left",
                client_id=registry.client_id,
                figure="cash",
                comparison="below",
                threshold="100",
                email=True,
                delivery="daily_digest",
                digest_at=time(8, 0),
                time_zone="UTC",
            )
        )
    await registry.snapshot("4", T0 + timedelta(hours=1))
    assert not [event for event in await registry.new_events() if isinstance(event, AlertRaised)]
    assert await registry.digests(T0 + timedelta(days=1)) == []
    # Nor may they act for the firm any more, whatever the command.
    with pytest.raises(CommandRejected) as refused:
        await registry.rule(registry.staff, figure="cash", comparison="below", threshold=Decimal(1))
    assert refused.value.rejection.reason is RejectionReason.NOT_FOUND
    async with transaction(registry.sessions) as session:
        command = RemoveClient(
            firm_id=registry.firm_id,
            actor=registry.actor(registry.staff),
            correlation_id="x",
            client_id=registry.client_id,
        )
        with pytest.raises(CommandRejected):
            await acting_member(session, command)
        await acting_member(session, command.model_copy(update={"actor": registry.actor(registry.owner)}))


@pytest.mark.parametrize("database_url", POSTGRESQL_ONLY, indirect=True)
async def test_a_rule_removed_while_a_snapshot_is_evaluated_leaves_no_alert_open(
    database_url: str, registry: Registry
) -> None:
    """On two replicas at once: the evaluation of a snapshot that breaks the rule, and the
    rule's removal. Whichever commits first, no episode of the removed rule stays open."""
    for attempt in range(5):
        rule_id = await registry.rule(registry.owner, figure="cash", comparison="below", threshold=Decimal(100))
        await asyncio.gather(
            registry.snapshot("10.00", T0 + timedelta(hours=attempt + 1)),
            registry.remove(rule_id),
        )
        async with registry.sessions() as session:
            open_episodes = (
                await session.execute(
                    select(func.count())
                    .select_from(AlertEpisodeRow)
                    .where(col(AlertEpisodeRow.rule_id) == rule_id, col(AlertEpisodeRow.ended_at).is_(None))
                )
            ).scalar_one()
        assert open_episodes == 0, attempt
        await registry.snapshot("1000.00", T0 + timedelta(hours=attempt + 1, minutes=30))  # the next one starts clean


@pytest.mark.parametrize("database_url", POSTGRESQL_ONLY, indirect=True)
async def test_a_colleague_removed_while_a_snapshot_is_evaluated_is_removed(
    database_url: str, registry: Registry
) -> None:
    """An evaluation holds the client of a snapshot when a colleague assigned to it, owner of
    a rule for every client, is removed (their clients unassigned, their rules removed); the
    evaluation then takes the rules. Both take the client before the rules, so the removal
    waits and goes through; removing the rules first made PostgreSQL abort one of them as a
    deadlock."""
    colleague = uuid.uuid4()
    async with transaction(registry.sessions) as session:
        session.add(
            Accountant(id=colleague, firm_id=registry.firm_id, email="c@al.example", display_name="C", role="admin")
        )
        client = await session.get(Client, registry.client_id)
        assert client is not None
        client.assigned_accountant_id = colleague
    await registry.rule(colleague, client_id=None, figure="cash", comparison="below", threshold=Decimal(100))
    removal = RemoveColleague(
        firm_id=registry.firm_id, actor=registry.actor(registry.owner), correlation_id="x", accountant_id=colleague
    )

    async def remove() -> ColleagueRemoved:
        async with transaction(registry.sessions) as session:
            return await firms.remove_colleague(session=session, command=removal)

    async with registry.sessions() as evaluation, evaluation.begin():
        assert await alerts._live_clients_held(evaluation, registry.firm_id, [registry.client_id])
        removing = asyncio.create_task(remove())
        await asyncio.sleep(0.5)  # the removal waits for the client (or held the rules first)
        assert await alerts._live_rules(evaluation, registry.firm_id, registry.client_id)
    removed = await asyncio.wait_for(removing, timeout=30)
    assert (removed.alert_rules_removed, removed.clients_unassigned) == (1, 1)


async def test_with_an_api_token_a_rule_keeps_its_webhook_as_the_rule_has_it_now(registry: Registry) -> None:
    """The check is the registry's, on the rule as locked: a token's save naming the URL the
    rule had a moment ago (someone signed in moved it since) is refused, not taken as a
    change back with a new secret for the token; the URL it has now may be kept."""
    hook: dict[str, Any] = {"figure": "cash", "comparison": "below", "threshold": "1", "email": False}
    first, moved = "http://127.0.0.1:9/first", "http://127.0.0.1:9/moved"
    rule_id = await registry.rule(registry.owner, webhook_url=first, **hook)
    await registry.save(registry.owner, rule_id, webhook_url=moved, **hook)
    for refused_save in (
        {"webhook_url": first},
        {"webhook_url": moved, "new_webhook_secret": True},
    ):
        with pytest.raises(CommandRejected) as refused:
            await registry.save(registry.owner, rule_id, webhook_may_change=False, **{**hook, **refused_save})
        assert (refused.value.rejection.reason, refused.value.rejection.field) == (
            RejectionReason.FORBIDDEN,
            "webhook_url",
        )
    with pytest.raises(CommandRejected):
        await registry.save(registry.owner, webhook_may_change=False, webhook_url=first, **hook)
    # Nor may a token replay a signed-in save's Idempotency-Key, which answers its secret.
    saved = await registry.save(registry.owner, creation_key="page-key", webhook_url=first, **hook)
    assert saved.webhook_secret
    with pytest.raises(CommandRejected) as replayed:
        await registry.save(
            registry.owner, creation_key="page-key", webhook_may_change=False, webhook_url=first, **hook
        )
    assert replayed.value.rejection.reason == RejectionReason.FORBIDDEN
    kept = await registry.save(
        registry.owner, rule_id, webhook_may_change=False, webhook_url=moved, **{**hook, "threshold": "5"}
    )
    assert kept.webhook_secret is None
    dropped = await registry.save(registry.owner, rule_id, webhook_may_change=False, **{**hook, "email": True})
    assert dropped.webhook_secret is None
