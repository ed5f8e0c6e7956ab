"""Alerts through the real hub: a rule crossing on a real snapshot sends exactly one email
(invitations' mail path, caught by the SMTP sink) and exactly one signed webhook (verified
here with the secret shown at creation); another snapshot in the same episode sends nothing;
the episode ends when the rule stops holding; every step is an event in the audit log."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeout

from hub_common.dev_mail import Mail, read_mailbox
from hub_common.local_nats import free_port
from hub_common.streams import EVENTS_STREAM
from tests.conftest import Sandbox
from tests.e2e.conftest import Hub
from tests.support.connect import add_connected_client
from tests.support.events import _on_the_broker
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

EMAIL = "riley@alerting-accounting.example"


class Receiver:
    """A webhook receiver on loopback that keeps every request as it came."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/hub"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiving = Receiver()
    try:
        yield receiving
    finally:
        receiving.close()


def _alert_events(nats_url: str, firm_id: str) -> list[dict[str, Any]]:
    """Every alert event of the firm in the audit log (HUB_EVENTS), oldest first."""

    async def read(nats: Client) -> list[dict[str, Any]]:
        js = nats.jetstream()
        subscription = await js.pull_subscribe(f"hub.{firm_id}.alert.>", stream=EVENTS_STREAM)
        found: list[dict[str, Any]] = []
        try:
            while True:
                try:
                    messages = await subscription.fetch(100, timeout=1)
                except NatsTimeout:
                    return found
                for message in messages:
                    found.append(json.loads(message.data))
                    await message.ack()
        finally:
            await subscription.unsubscribe()

    return _on_the_broker(nats_url, read)


def _alert_mails(hub: Hub) -> list[Mail]:
    return [mail for mail in read_mailbox(hub.mail_dir) if EMAIL in mail.to and mail.subject.startswith("Alert:")]


def _refreshed(api: httpx.Client, client_id: str, company_id: str, after: str) -> str:
    """Refresh one company and wait for its new figures on the dashboard; their time."""
    assert api.post("/api/v1/refresh", json={"client_id": client_id, "company_id": company_id}).status_code == 202

    def newer() -> str | None:
        rows = api.get("/api/v1/dashboard", params={"client_id": client_id}).json()["rows"]
        row = next(r for r in rows if r["company_id"] == company_id)
        return row["as_of"] if row["state"] == "ok" and row["as_of"] > after else None

    return eventually(newer, "the company's next snapshot", timeout=60)


def _open_episodes(api: httpx.Client, rule_id: str) -> int:
    rules = api.get("/api/v1/alert-rules").json()["rules"]
    count: int = next(rule for rule in rules if rule["rule_id"] == rule_id)["open_episodes"]
    return count


def test_a_rule_crossing_sends_one_mail_and_one_signed_webhook_per_episode(
    hub: Hub, sandbox: Sandbox, receiver: Receiver, nats_url: str
) -> None:
    tenants = httpx.get(f"{sandbox.base_url}/_sandbox/tenants", verify=sandbox.tls()).json()["tenants"]
    tenant = next(t for t in tenants if t["consented"] and t["domain"] != "cronus-sample.onmicrosoft.com")
    production = next(e for e in tenant["environments"] if e["name"] == "Production")
    api = hub.client(EMAIL)
    firm_id = api.get("/api/v1/me").json()["firm_id"]
    client_id = add_connected_client(sandbox, api, {"name": "Alerting client", "client_url": production["client_url"]})
    company_ids = {c["id"] for c in production["companies"]}

    def all_read() -> list[dict[str, Any]] | None:
        rows = api.get("/api/v1/dashboard", params={"client_id": client_id}).json()["rows"]
        return rows if {r["company_id"] for r in rows if r["state"] == "ok"} >= company_ids else None

    rows = eventually(all_read, "the client's companies read", timeout=90)
    # The company with the least cash; the rule holds for it alone (cash below its cash + 0.01).
    row = min(rows, key=lambda r: Decimal(r["values"]["cash"]))
    company_id, cash = row["company_id"], Decimal(row["values"]["cash"])
    others = [Decimal(r["values"]["cash"]) for r in rows if r["company_id"] != company_id]
    assert all(other > cash + Decimal("0.01") for other in others), "the sandbox's companies have distinct cash"

    rule = {
        "name": "Cash running low",
        "client_id": client_id,
        "figure": "cash",
        "comparison": "below",
        "threshold": str(cash + Decimal("0.01")),
        "email": True,
        "webhook_url": receiver.url,
    }
    created = api.post("/api/v1/alert-rules", json=rule)
    assert created.status_code == 201, created.text
    rule_id, secret = created.json()["rule_id"], created.json()["webhook_secret"]
    assert secret and secret.startswith("whsec_")
    listed = api.get("/api/v1/alert-rules").json()["rules"]
    assert [r["rule_id"] for r in listed] == [rule_id]
    assert "webhook_secret" not in listed[0]  # shown once, at creation

    as_of = _refreshed(api, client_id, company_id, row["as_of"])
    eventually(lambda: receiver.requests, "the signed webhook", timeout=30)
    mails = eventually(lambda: _alert_mails(hub), "the alert mail", timeout=30)

    # The webhook: signed over the timestamp and the raw body, keyed by the alert's event id.
    [(headers, body)] = receiver.requests
    expected = hmac.new(secret.encode(), f"{headers['x-hub-timestamp']}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-hub-signature"], f"sha256={expected}")
    assert abs(time.time() - int(headers["x-hub-timestamp"])) < 120
    assert headers["x-hub-event"] == "AlertRaised"
    alert = json.loads(body)
    assert headers["idempotency-key"] == alert["id"]
    assert alert["type"] == "AlertRaised" and alert["firm_id"] == firm_id
    assert alert["data"]["rule_id"] == rule_id and alert["data"]["company_id"] == company_id
    assert Decimal(alert["data"]["value"]) == cash
    assert "recipient" not in alert["data"]
    # The mail: one, to the rule's owner, naming the rule and the client.
    [mail] = mails
    assert "Cash running low" in mail.subject and "Alerting client" in mail.subject
    assert mail.text is not None and "now holds" in mail.text
    assert _open_episodes(api, rule_id) == 1
    # The read model shows it (the dashboard's marker and the Alerts page read it).
    [shown] = eventually(lambda: api.get("/api/v1/alerts").json()["alerts"], "the open alert", timeout=15)
    assert (shown["rule_id"], shown["company_id"], Decimal(shown["value"])) == (rule_id, company_id, cash)
    assert shown["ended_at"] is None
    marked = api.get("/api/v1/alerts/markers", params={"client_id": client_id}).json()
    assert marked["open_total"] == 1
    assert [(m["company_id"], m["count"], m["rule_names"]) for m in marked["markers"]] == [
        (company_id, 1, ["Cash running low"])
    ]
    # At most 100 clients a request, each a client id.
    too_many = api.get("/api/v1/alerts/markers", params={"client_id": [str(uuid.uuid4()) for _ in range(101)]})
    assert too_many.status_code == 422, too_many.text[:300]
    assert api.get("/api/v1/alerts/markers", params={"client_id": "nope"}).status_code == 422

    # Another snapshot while the rule still holds: the same episode, nothing sent.
    as_of = _refreshed(api, client_id, company_id, as_of)
    time.sleep(3)  # the registry, the invitations service and the webhook sender had their chance
    assert len(receiver.requests) == 1
    assert len(_alert_mails(hub)) == 1
    assert _open_episodes(api, rule_id) == 1

    # The rule no longer holds at the next snapshot: the episode ends, and nothing is sent.
    changed = api.put(f"/api/v1/alert-rules/{rule_id}", json={**rule, "threshold": str(cash)})
    assert changed.status_code == 200, changed.text
    assert changed.json()["webhook_secret"] is None  # the rule's secret stays as it was
    _refreshed(api, client_id, company_id, as_of)
    eventually(lambda: _open_episodes(api, rule_id) == 0 or None, "the episode's end", timeout=30)
    eventually(lambda: api.get("/api/v1/alerts").json()["alerts"] == [] or None, "no open alert", timeout=15)
    [ended] = api.get("/api/v1/alerts", params={"status": "all"}).json()["alerts"]
    assert ended["episode_id"] == shown["episode_id"] and ended["end_reason"] == "no_longer_holds"
    time.sleep(2)
    assert len(receiver.requests) == 1
    assert len(_alert_mails(hub)) == 1

    # The audit log: the rule set twice, one episode raised and resolved, each with its actor.
    events = _alert_events(nats_url, firm_id)
    types = [event["type"] for event in events]
    assert types == ["AlertRuleSet", "AlertRaised", "AlertRuleSet", "AlertResolved"], types
    raised = events[1]
    assert raised["id"] == alert["id"]
    assert raised["data"]["recipient"]["email"] == EMAIL
    assert events[3]["data"]["episode_id"] == raised["data"]["episode_id"]
    assert events[3]["data"]["reason"] == "no_longer_holds"
    assert all(secret not in json.dumps(event) for event in events)
    # Where the webhook points, never its path (a receiver's token often sits there).
    assert events[0]["data"]["webhook_host"] == f"http://127.0.0.1:{receiver.port}"
    assert all("/hooks/hub" not in json.dumps(event) for event in events)


def test_a_card_moved_to_another_environment_shows_and_alerts_only_the_new_ones_companies(
    hub: Hub, sandbox: Sandbox
) -> None:
    """A Client URL corrected from Production to the tenant's Sandbox: the old companies'
    rows and open alerts ended with the move, and the new environment was read at once
    (nothing else asked for it until the schedule came round). The sample tenant keeps a
    Sandbox environment."""
    tenants = httpx.get(f"{sandbox.base_url}/_sandbox/tenants", verify=sandbox.tls()).json()["tenants"]
    tenant = next(t for t in tenants if t["domain"] == "cronus-sample.onmicrosoft.com")
    production, other = (
        next(e for e in tenant["environments"] if e["name"] == name) for name in ("Production", "Sandbox")
    )
    api = hub.client("mover@contoso-moves.example")
    card = {"name": "Moving client", "client_url": production["client_url"]}
    client_id = add_connected_client(sandbox, api, card)

    def read(environment: dict[str, Any]) -> list[dict[str, Any]] | None:
        rows = api.get("/api/v1/dashboard", params={"client_id": client_id}).json()["rows"]
        wanted = {c["id"] for c in environment["companies"]}
        ok = {r["company_id"] for r in rows if r["state"] == "ok"}
        return rows if ok >= wanted and {r["company_id"] for r in rows} == wanted else None

    rows = eventually(lambda: read(production), "the Production companies read", timeout=90)
    rule = {"name": "Any cash", "client_id": client_id, "figure": "cash", "comparison": "above", "threshold": "-1e9"}
    assert api.post("/api/v1/alert-rules", json=rule).status_code == 201, "a rule holding for every company"
    _refreshed(api, client_id, rows[0]["company_id"], rows[0]["as_of"])
    eventually(lambda: api.get("/api/v1/alerts").json()["alerts"] or None, "an open alert", timeout=30)

    moved = api.put(f"/api/v1/clients/{client_id}", json={**card, "client_url": other["client_url"]})
    assert moved.status_code == 202, moved.text
    eventually(lambda: read(other), "only the Sandbox's companies, read without being asked", timeout=90)
    old_companies = {c["id"] for c in production["companies"]}
    ended = eventually(
        lambda: (
            [
                a
                for a in api.get("/api/v1/alerts", params={"status": "all"}).json()["alerts"]
                if a["company_id"] in old_companies and a["ended_at"]
            ]
            or None
        ),
        "the old company's alert ended",
        timeout=30,
    )
    assert {a["end_reason"] for a in ended} == {"company_gone"}
    still_open = api.get("/api/v1/alerts").json()["alerts"]
    assert all(a["company_id"] not in old_companies for a in still_open), still_open


def test_a_webhook_to_a_private_address_is_refused(hub: Hub) -> None:
    api = hub.client(EMAIL)
    for url in (
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.8/hook",
        "http://hooks.example.com/hub",
        "https://user:secret@hooks.example.com/hub",
    ):
        answer = api.post(
            "/api/v1/alert-rules",
            json={"name": "Refused", "figure": "cash", "comparison": "below", "threshold": "1", "webhook_url": url},
        )
        assert answer.status_code == 422, (url, answer.text)
        assert "webhook_url" in answer.text


def test_an_api_token_cannot_give_a_rule_a_webhook_or_learn_its_secret(hub: Hub, receiver: Receiver) -> None:
    """A webhook posts the firm's figures for as long as its rule lasts: one a leaked token
    named would go on after the token's revocation. With a token, a rule keeps the webhook it
    has (its other fields still change), or has none."""
    signed_in = hub.client("noor@token-webhooks.example")
    made = signed_in.post("/api/v1/tokens", json={"name": "Integration"})
    assert made.status_code == 201, made.text
    token = httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {made.json()['token']}"})
    rule = {"name": "Low cash", "figure": "cash", "comparison": "below", "threshold": "1"}
    hooked = {**rule, "webhook_url": receiver.url}

    refused = token.post("/api/v1/alert-rules", json=hooked)
    assert refused.status_code == 403, refused.text
    assert refused.json()["detail"]["field"] == "webhook_url"
    assert "signed in" in refused.json()["detail"]["message"]
    plain = token.post("/api/v1/alert-rules", json=rule)
    assert plain.status_code == 201, plain.text
    assert token.put(f"/api/v1/alert-rules/{plain.json()['rule_id']}", json=hooked).status_code == 403

    with_webhook = signed_in.post("/api/v1/alert-rules", json=hooked)
    assert with_webhook.status_code == 201, with_webhook.text
    rule_id, secret = with_webhook.json()["rule_id"], with_webhook.json()["webhook_secret"]
    kept = token.put(f"/api/v1/alert-rules/{rule_id}", json={**hooked, "threshold": "5"})
    assert kept.status_code == 200, kept.text
    assert kept.json().get("webhook_secret") is None
    elsewhere = {**hooked, "webhook_url": receiver.url.replace("/hooks/hub", "/elsewhere")}
    assert token.put(f"/api/v1/alert-rules/{rule_id}", json=elsewhere).status_code == 403
    assert token.put(f"/api/v1/alert-rules/{rule_id}", json={**hooked, "new_webhook_secret": True}).status_code == 403
    # Taking a webhook away gives nothing: a token may.
    assert token.put(f"/api/v1/alert-rules/{rule_id}", json=rule).status_code == 200
    saved = next(r for r in signed_in.get("/api/v1/alert-rules").json()["rules"] if r["rule_id"] == rule_id)
    assert (saved["webhook_url"], saved["threshold"]) == (None, "1")
    # Signed in, the same changes go through.
    renewed = signed_in.put(f"/api/v1/alert-rules/{rule_id}", json=elsewhere)
    assert renewed.status_code == 200 and renewed.json()["webhook_secret"] not in (None, secret), renewed.text


def test_another_firms_rule_is_not_found(hub: Hub) -> None:
    mine = hub.client(EMAIL)
    created = mine.post(
        "/api/v1/alert-rules", json={"name": "Mine", "figure": "cash", "comparison": "below", "threshold": "1"}
    )
    assert created.status_code == 201, created.text
    rule_id = created.json()["rule_id"]
    other = hub.client("sam@another-firm-alerting.example")
    rule = {"name": "Theirs", "figure": "cash", "comparison": "below", "threshold": "5"}
    assert other.put(f"/api/v1/alert-rules/{rule_id}", json=rule).status_code == 404
    assert other.delete(f"/api/v1/alert-rules/{rule_id}").status_code == 404
    assert other.get("/api/v1/alert-rules").json()["rules"] == []
    assert other.post("/api/v1/alert-rules", json={**rule, "client_id": str(uuid.uuid4())}).status_code == 404
    assert mine.delete(f"/api/v1/alert-rules/{rule_id}").status_code == 204


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"figure": "failing_hours", "comparison": "below", "threshold": "24"}, "comparison"),
        ({"figure": "runway_weeks", "comparison": "below", "threshold": "20"}, "threshold"),
        ({"figure": "cash", "comparison": "below", "threshold": "1", "delivery": "daily_digest"}, "digest_at"),
        ({"figure": "cash", "comparison": "below", "threshold": "1", "time_zone": "Mars/Olympus_Mons"}, "time_zone"),
        ({"figure": "cash", "comparison": "below", "threshold": "1", "email": False}, "email"),
        ({"figure": "cash", "comparison": "between", "threshold": "1"}, "comparison"),
        ({"figure": "mood", "comparison": "below", "threshold": "1"}, "figure"),
        ({"figure": "cash", "comparison": "below", "threshold": "NaN"}, "threshold"),
    ],
)
def test_a_rule_that_cannot_be_kept_is_refused_naming_the_field(hub: Hub, rule: dict[str, Any], field: str) -> None:
    answer = hub.client(EMAIL).post("/api/v1/alert-rules", json={"name": "Refused", **rule})
    assert answer.status_code == 422, answer.text
    assert field in answer.text


def test_a_rule_saved_again_under_its_idempotency_key_is_one_rule(hub: Hub) -> None:
    """A save whose answer was lost, sent again with its Idempotency-Key: the same rule and
    secret, not a second rule; the key with another rule, or not a key at all, is refused."""
    api = hub.client("kit@idempotent-accounting.example")
    rule = {"name": "Once", "figure": "cash", "comparison": "below", "threshold": "1"}
    rule |= {"webhook_url": "http://127.0.0.1:9/hook"}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = api.post("/api/v1/alert-rules", json=rule, headers=key)
    again = api.post("/api/v1/alert-rules", json=rule, headers=key)
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.json() == first.json() and first.json()["webhook_secret"]
    assert [listed["rule_id"] for listed in api.get("/api/v1/alert-rules").json()["rules"]] == [first.json()["rule_id"]]
    other = api.post("/api/v1/alert-rules", json={**rule, "threshold": "2"}, headers=key)
    assert other.status_code == 422 and "Idempotency-Key" in other.text, other.text
    for bad in (b"two words", b"x" * 256, "clé".encode()):
        refused = api.post("/api/v1/alert-rules", json=rule, headers={b"Idempotency-Key": bad})
        assert refused.status_code == 422 and "Idempotency-Key" in refused.text, (bad, refused.text)
    assert len(api.get("/api/v1/alert-rules").json()["rules"]) == 1
