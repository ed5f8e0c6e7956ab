"""Business Central webhooks end to end, on real processes with no timer-based refresh: a
document changed in the sandbox's BC reaches the open dashboard through the notice BC
posts to the gateway; a subscription near its expiry is renewed; a notification address
BC cannot reach shows as a failed handshake on the client card, and the next refresh
subscribes once it is reachable again.

The hub here has a broker, a sandbox and processes of its own: its fetcher subscribes
(HUB_NOTIFICATION_URL, through a TCP proxy a test can cut, as a public address can be
unreachable), its registry has no schedule, and the sandbox batches changes for 1 s
instead of BC's 30.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.aio.msg import Msg
from playwright.sync_api import Page, expect

from hub_common.change_notifications import NOTIFICATION_PATH, NOTIFIED_ENTITIES, CompanyAddress, NotificationSigner
from hub_common.commands import RECORD_BUSINESS_CENTRAL_CHANGES
from hub_common.local_nats import LocalNatsServer, free_port
from tests.conftest import Sandbox, declare_as_the_registry, running_sandbox
from tests.e2e.browser import connect_consented_tenant, row_of, shot, sign_in
from tests.e2e.conftest import SECRET_KEY, Hub
from tests.faults.tcp_proxy import TcpProxy
from tests.support.processes import start_service, stop_all, wait_until_healthy
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

EMAIL = "nora@notified-accounting.example"


@dataclass
class NotifiedHub:
    hub: Hub
    sandbox: Sandbox
    # Between BC (the sandbox) and the gateway's notification address.
    public_address: TcpProxy

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=f"{self.sandbox.base_url}/_sandbox", verify=self.sandbox.tls(), timeout=30)


@pytest.fixture(scope="module")
def notified(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotifiedHub]:
    home: Path = tmp_path_factory.mktemp("notified")
    gateway_port = free_port()
    proxy = TcpProxy("127.0.0.1", gateway_port).start()
    sandbox_settings = {"HUB_SANDBOX_WEBHOOK_DELAY_SECONDS": "1", "HUB_SANDBOX_WEBHOOK_RETRY_SECONDS": "1"}
    with (
        LocalNatsServer(home / "nats") as nats,
        running_sandbox(home / "sandbox", f"http://127.0.0.1:{gateway_port}", sandbox_settings) as sandbox,
    ):
        common = {
            "HUB_NATS_URL": nats.url,
            "HUB_MODE": "dev",
            "HUB_PUBLIC_URL": f"http://127.0.0.1:{gateway_port}",
            "HUB_SECRET_KEY": SECRET_KEY,
            "HUB_NOTIFICATION_URL": f"http://127.0.0.1:{proxy.port}{NOTIFICATION_PATH}",
            **sandbox.settings_environment(),
        }
        logs = home / "logs"
        gateway_environment = {
            **common,
            "HUB_DATABASE_URL": f"sqlite:///{home / 'gateway.db'}",
            "HUB_SMTP_SINK_DIR": str(home / "mail"),
        }
        processes = [
            start_service(
                "registry",
                "registry",
                {
                    **common,
                    "HUB_DATABASE_URL": f"sqlite:///{home / 'registry.db'}",
                    # No timer: only a request or a change notice refreshes.
                    "HUB_SCHEDULED_REFRESH_SECONDS": "0",
                    "HUB_NOTIFICATION_CHECK_SECONDS": "1",
                },
                logs,
            ),
            start_service("fetcher", "fetcher", common, logs),
            start_service("gateway", "gateway", {**gateway_environment, "HUB_PORT": str(gateway_port)}, logs),
        ]
        url = f"http://127.0.0.1:{gateway_port}"
        try:
            wait_until_healthy(f"{url}/healthz", processes[-1], timeout=90)
            yield NotifiedHub(Hub(url, processes, gateway_environment, home), sandbox, proxy)
        finally:
            try:
                stop_all(reversed(processes))
            finally:
                proxy.stop()


@pytest.fixture(scope="module")
def connected(notified: NotifiedHub) -> dict[str, Any]:
    """The consented tenant's Production, connected, read and subscribed."""
    api = notified.hub.client(EMAIL)
    connected = connect_consented_tenant(notified.sandbox, api)
    tenant, production, client_id = connected.tenant, connected.production, connected.client_id
    company_ids = {c["id"] for c in production["companies"]}

    def subscribed() -> list[dict[str, Any]] | None:
        mine = next(c for c in api.get("/api/v1/clients").json()["clients"] if c["client_id"] == client_id)
        states = mine["change_notifications"]
        done = {c["company_id"] for c in states if c["state"] == "subscribed"} == company_ids
        return states if done else None

    states = eventually(subscribed, "every company subscribed to BC's change notices", timeout=90)
    return {"client_id": client_id, "tenant": tenant, "production": production, "states": states}


def _hub_subscriptions(notified: NotifiedHub) -> list[dict[str, Any]]:
    with notified.admin() as admin:
        listed: list[dict[str, Any]] = admin.get("/webhooks/subscriptions").raise_for_status().json()["subscriptions"]
    return [s for s in listed if s["notification_url"].startswith(f"http://127.0.0.1:{notified.public_address.port}")]


def _row(api: httpx.Client, company_id: str) -> dict[str, Any]:
    rows = api.get("/api/v1/dashboard", params={"page_size": 200}).json()["rows"]
    row: dict[str, Any] = next(r for r in rows if r["company_id"] == company_id)
    return row


def test_every_company_is_subscribed_to_the_entities_of_its_figures(
    notified: NotifiedHub, connected: dict[str, Any]
) -> None:
    subscriptions = _hub_subscriptions(notified)
    companies = {c["id"] for c in connected["production"]["companies"]}
    by_company: dict[str, set[str]] = {}
    for subscription in subscriptions:
        resource = subscription["resource"]
        company = resource.split("companies(")[1].split(")")[0]
        by_company.setdefault(company, set()).add(resource.rsplit("/", 1)[1])
    assert set(by_company) == companies
    assert all(entities == set(NOTIFIED_ENTITIES) for entities in by_company.values()), by_company
    # One address per company, and a different secret per subscription.
    assert len({s["notification_url"] for s in subscriptions}) == len(companies)
    assert len({s["client_state"] for s in subscriptions}) == len(subscriptions)
    for state in connected["states"]:
        assert sorted(state["entities"]) == sorted(NOTIFIED_ENTITIES)
        assert datetime.fromisoformat(state["expires_at"]) > datetime.fromisoformat(state["checked_at"])


def test_a_payment_in_bc_reaches_the_open_dashboard_through_a_webhook(
    notified: NotifiedHub, connected: dict[str, Any], page: Page
) -> None:
    api = notified.hub.client(EMAIL)
    company = connected["production"]["companies"][0]
    name = company["display_name"] or company["name"]
    before = _row(api, company["id"])
    details = api.get(f"/api/v1/clients/{connected['client_id']}/companies/{company['id']}").json()
    overdue = details["figures"]["overdue_sales_invoices"]
    invoice = overdue["largest"][0]

    sign_in(page, notified.hub, EMAIL)
    row = row_of(page, name)
    expect(row.locator(".state")).to_have_text("OK", timeout=30_000)
    shown_before = row.inner_text()

    started = time.monotonic()
    with notified.admin() as admin:
        paid = admin.post(
            f"/companies/{company['id']}/customer-payments",
            json={"invoice": invoice["number"], "amount": invoice["amount"]},
        )
    assert paid.status_code == 201, paid.text

    def refreshed() -> dict[str, Any] | None:
        row = _row(api, company["id"])
        return row if row["values"]["overdue_sales_invoices_count"] == overdue["count"] - 1 else None

    after = eventually(refreshed, "the payment on the dashboard", timeout=60)
    took = time.monotonic() - started
    assert took < 60, took
    paid_amount = Decimal(invoice["amount"])
    assert Decimal(after["values"]["cash"]) == Decimal(before["values"]["cash"]) + paid_amount
    assert Decimal(after["values"]["overdue_sales_invoices_amount"]) == (
        Decimal(before["values"]["overdue_sales_invoices_amount"]) - paid_amount
    )
    # The open page shows it without a reload.
    expect(row).not_to_have_text(shown_before, timeout=30_000)
    expect(row.locator(".state")).to_have_text("OK")
    shot(page, "change-notification-reached-dashboard")

    # BC's notice is in the audit log as the cause, and the card says when it came.
    client = next(c for c in api.get("/api/v1/clients").json()["clients"] if c["client_id"] == connected["client_id"])
    noticed = next(c for c in client["change_notifications"] if c["company_id"] == company["id"])
    assert noticed["last_change_at"] is not None
    with notified.admin() as admin:
        deliveries = admin.get("/webhooks/deliveries").raise_for_status().json()
    assert any(d.get("status") == 202 for d in deliveries), deliveries[-3:]

    # A second change: the first refresh's snapshot answered it, so the registry asks again
    # (it waits for an unanswered one, an hour at most).
    second = overdue["largest"][1]
    with notified.admin() as admin:
        admin.post(
            f"/companies/{company['id']}/customer-payments",
            json={"invoice": second["number"], "amount": second["amount"]},
        ).raise_for_status()

    def refreshed_again() -> dict[str, Any] | None:
        row = _row(api, company["id"])
        return row if row["values"]["overdue_sales_invoices_count"] == overdue["count"] - 2 else None

    eventually(refreshed_again, "the second payment on the dashboard", timeout=90)


def test_a_subscription_near_expiry_is_renewed(notified: NotifiedHub, connected: dict[str, Any]) -> None:
    api = notified.hub.client(EMAIL)
    before = {s["subscription_id"]: s["expires_at"] for s in _hub_subscriptions(notified)}
    # Two and a half days later on BC's clock: under the two days' margin left.
    with notified.admin() as admin:
        admin.put("/clock", json={"advance_seconds": 2.5 * 24 * 3600}).raise_for_status()
    assert api.post("/api/v1/refresh", json={"client_id": connected["client_id"]}).status_code == 202

    def renewed() -> list[dict[str, Any]] | None:
        now = _hub_subscriptions(notified)
        moved = [s for s in now if s["subscription_id"] in before and s["expires_at"] > before[s["subscription_id"]]]
        return now if len(moved) == len(before) else None

    after = eventually(renewed, "every subscription renewed", timeout=60)
    # Renewed in place (same ids, PATCH), not replaced.
    assert {s["subscription_id"] for s in after} == set(before)
    with notified.admin() as admin:
        handshakes = admin.get("/webhooks/handshakes").raise_for_status().json()
    assert len([h for h in handshakes if h.get("ok")]) >= 2 * len(before)


def test_an_unreachable_notification_address_shows_as_a_failed_handshake(
    notified: NotifiedHub, connected: dict[str, Any], page: Page
) -> None:
    api = notified.hub.client(EMAIL)
    client_id = connected["client_id"]
    with notified.admin() as admin:
        # BC lost them (as after a long outage): the next refresh must subscribe anew.
        admin.delete("/webhooks/subscriptions").raise_for_status()
    notified.public_address.cut()
    try:
        assert api.post("/api/v1/refresh", json={"client_id": client_id}).status_code == 202

        def failed() -> list[dict[str, Any]] | None:
            client = next(c for c in api.get("/api/v1/clients").json()["clients"] if c["client_id"] == client_id)
            states = client["change_notifications"]
            return states if all(c["state"] == "failed" for c in states) else None

        states = eventually(failed, "the failed handshake on the client", timeout=60)
        assert "notification address" in states[0]["detail"]
        assert states[0]["failure"]["http_status"] == 400
        sign_in(page, notified.hub, EMAIL)
        page.goto(f"{notified.hub.url}/clients/{client_id}")
        first = page.locator("#change-notifications li").first
        expect(first).to_contain_text("Subscribing to changes failed")
        first.locator("summary").click()
        expect(first).to_contain_text("notification address")
        shot(page, "change-notifications-failed-handshake")
    finally:
        notified.public_address.restore()
    assert api.post("/api/v1/refresh", json={"client_id": client_id}).status_code == 202

    def subscribed_again() -> bool | None:
        client = next(c for c in api.get("/api/v1/clients").json()["clients"] if c["client_id"] == client_id)
        return all(c["state"] == "subscribed" for c in client["change_notifications"]) or None

    eventually(subscribed_again, "subscribed again once the address answers", timeout=60)


def test_an_environment_at_bcs_limit_is_read_on_schedule(notified: NotifiedHub, connected: dict[str, Any]) -> None:
    api = notified.hub.client(EMAIL)
    client_id = connected["client_id"]
    tenant, environment = connected["tenant"]["id"], connected["production"]["name"]
    others = f"/tenants/{tenant}/environments/{environment}/other-subscriptions"
    with notified.admin() as admin:
        admin.delete("/webhooks/subscriptions").raise_for_status()
        # Other apps hold all but two of the environment's 200: no company gets its five.
        admin.put(others, json={"count": 198}).raise_for_status()
    try:
        assert api.post("/api/v1/refresh", json={"client_id": client_id}).status_code == 202

        def polling() -> list[dict[str, Any]] | None:
            client = next(c for c in api.get("/api/v1/clients").json()["clients"] if c["client_id"] == client_id)
            states = client["change_notifications"]
            return states if all(c["state"] == "polling" for c in states) else None

        states = eventually(polling, "every company read on schedule", timeout=60)
        assert "limit" in states[0]["detail"]
        # All five or none: what BC took before its limit bound is given back.
        assert _hub_subscriptions(notified) == []
    finally:
        with notified.admin() as admin:
            admin.put(others, json={"count": 0}).raise_for_status()
    assert api.post("/api/v1/refresh", json={"client_id": client_id}).status_code == 202

    def subscribed_again() -> bool | None:
        client = next(c for c in api.get("/api/v1/clients").json()["clients"] if c["client_id"] == client_id)
        return all(c["state"] == "subscribed" for c in client["change_notifications"]) or None

    eventually(subscribed_again, "subscribed again once there is room", timeout=60)


def test_notices_not_signed_for_the_company_are_refused(notified: NotifiedHub, connected: dict[str, Any]) -> None:
    api = notified.hub.client(EMAIL)
    firm_id = uuid.UUID(api.get("/api/v1/me").json()["firm_id"])
    company_id = uuid.UUID(connected["production"]["companies"][0]["id"])
    address = CompanyAddress(firm_id, uuid.UUID(connected["client_id"]), company_id)
    signer = NotificationSigner.of_secret(SECRET_KEY)
    url = f"{notified.hub.url}{NOTIFICATION_PATH}/{signer.key(address)}"
    resource = f"api/v2.0/companies({company_id})/salesInvoices({uuid.uuid4()})"

    def notice(client_state: str, about: str = resource, change: str = "updated") -> dict[str, Any]:
        return {
            "value": [
                {
                    "subscriptionId": "s1",
                    "clientState": client_state,
                    "expirationDateTime": "2026-12-06T00:00:00Z",
                    "resource": about,
                    "changeType": change,
                    "lastModifiedDateTime": "2026-12-03T00:00:00Z",
                }
            ]
        }

    with httpx.Client(timeout=20) as bc:
        handshake = bc.post(url, params={"validationToken": "<script>alert(1)</script>"})
        assert handshake.status_code == 200 and handshake.text == "<script>alert(1)</script>"
        assert handshake.headers["content-type"].startswith("text/plain")
        assert handshake.headers["x-content-type-options"] == "nosniff"
        forged = NotificationSigner.of_secret("a guessed secret that is long enough for the test").key(address)
        assert (
            bc.post(f"{notified.hub.url}{NOTIFICATION_PATH}/{forged}", params={"validationToken": "t"}).status_code
            == 404
        )
        assert bc.post(url, json=notice("not the client state")).status_code == 401
        # Another company's client state does not pass under this company's key.
        neighbour = CompanyAddress(firm_id, address.client_id, uuid.uuid4())
        assert bc.post(url, json=notice(signer.client_state(neighbour, "salesInvoices"))).status_code == 401
        assert bc.post(url, content=b"{not json").status_code == 400
        assert bc.post(url, json={"value": []}).status_code == 400
        assert bc.post(url, content=b"x" * (5 * 1024 * 1024)).status_code == 413
        # BC's own shape, a change kind it may add later included, is taken.
        genuine = signer.client_state(address, "salesInvoices")
        assert bc.post(url, json=notice(genuine)).status_code == 202
        assert bc.post(url, json=notice(genuine, change="restored")).status_code == 202


def test_a_notice_is_known_by_its_client_state_whatever_else_bc_sends(
    notified: NotifiedHub, connected: dict[str, Any]
) -> None:
    """The key names the company and the client state the entity: a resource BC spells
    otherwise, fields the hub does not read left empty or out, or a forged notice beside a
    genuine one never make the gateway refuse (BC would delete a working subscription)."""
    api = notified.hub.client(EMAIL)
    firm_id = uuid.UUID(api.get("/api/v1/me").json()["firm_id"])
    company_id = uuid.UUID(connected["production"]["companies"][0]["id"])
    address = CompanyAddress(firm_id, uuid.UUID(connected["client_id"]), company_id)
    signer = NotificationSigner.of_secret(SECRET_KEY)
    url = f"{notified.hub.url}{NOTIFICATION_PATH}/{signer.key(address)}"
    purchases = signer.client_state(address, "purchaseInvoices")
    odd_notices: list[dict[str, Any]] = [
        # Absolute, in other case, and about an entity BC names in its own way.
        {
            "clientState": purchases,
            "resource": f"https://api.businesscentral.dynamics.com/v2.0/t/Production/API/V2.0/companies({company_id})",
            "changeType": "updated",
            "lastModifiedDateTime": "",
            "subscriptionId": None,
        },
        {"clientState": purchases},
        {"clientState": purchases, "changeType": "a kind of change BC adds later, " * 20},
        {"clientState": purchases, "changeType": {"kind": "updated"}},
        {"clientState": signer.client_state(address, "salesQuotes"), "changeType": "collection", "resource": 7},
    ]
    with httpx.Client(timeout=20) as bc:
        for odd in odd_notices:
            assert bc.post(url, json={"value": [odd]}).status_code == 202, odd
        # One forged notice beside a genuine one: the genuine one counts.
        assert bc.post(url, json={"value": [{"clientState": "forged"}, odd_notices[1], "x"]}).status_code == 202
        # The handshake on GET as on POST.
        handshake = bc.get(url, params={"validationToken": "by GET"})
        assert handshake.status_code == 200 and handshake.text == "by GET"
        forged = NotificationSigner.of_secret("a guessed secret that is long enough for the test").key(address)
        assert (
            bc.get(f"{notified.hub.url}{NOTIFICATION_PATH}/{forged}", params={"validationToken": "t"}).status_code
            == 404
        )


def test_a_company_is_subscribed_before_it_is_read(notified: NotifiedHub, connected: dict[str, Any]) -> None:
    """BC notifies only changes made once a subscription exists, so a refresh subscribes
    first: with every company's read refused, the subscriptions are made all the same."""
    api = notified.hub.client(EMAIL)
    client_id = connected["client_id"]
    companies = {c["id"] for c in connected["production"]["companies"]}
    faults = f"/tenants/{connected['tenant']['id']}/faults"
    with notified.admin() as admin:
        admin.delete("/webhooks/subscriptions").raise_for_status()
        admin.put(faults, json={"kind": "company_forbidden"}).raise_for_status()
    try:
        assert api.post("/api/v1/refresh", json={"client_id": client_id}).status_code == 202

        def read_refused() -> bool | None:
            rows = [_row(api, company_id) for company_id in companies]
            return all(row["state"] == "failed" for row in rows) or None

        eventually(read_refused, "every company's read refused", timeout=60)
        subscribed = {s["resource"].split("companies(")[1].split(")")[0] for s in _hub_subscriptions(notified)}
        assert subscribed == companies
        assert len(_hub_subscriptions(notified)) == len(companies) * len(NOTIFIED_ENTITIES)
    finally:
        with notified.admin() as admin:
            admin.delete(faults).raise_for_status()
    assert api.post("/api/v1/refresh", json={"client_id": client_id}).status_code == 202
    eventually(
        lambda: all(_row(api, company_id)["state"] == "ok" for company_id in companies) or None,
        "every company read again",
        timeout=60,
    )


def test_a_notice_the_registry_does_not_store_in_time_is_answered_503(
    notified: NotifiedHub, connected: dict[str, Any], tmp_path: Path
) -> None:
    """BC waits a few seconds for its POST; a registry that takes longer is a 503 (BC
    retries) after about 4 s, not after the gateway's general command timeout (10 s)."""
    api = notified.hub.client(EMAIL)
    firm_id = uuid.UUID(api.get("/api/v1/me").json()["firm_id"])
    address = CompanyAddress(firm_id, uuid.UUID(connected["client_id"]), uuid.uuid4())
    signer = NotificationSigner.of_secret(SECRET_KEY)
    port = free_port()
    with LocalNatsServer(tmp_path / "nats") as nats_server, _registry_that_never_answers(nats_server.url):
        declare_as_the_registry(nats_server.url)  # what this registry does do, at its start
        gateway = start_service(
            "slow-registry-gateway",
            "gateway",
            {
                **notified.hub.gateway_environment,
                "HUB_NATS_URL": nats_server.url,
                "HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'gateway.db'}",
                "HUB_PORT": str(port),
            },
            tmp_path / "logs",
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_healthy(f"{url}/healthz", gateway, timeout=90)
            notice = {
                "value": [
                    {
                        "subscriptionId": "s1",
                        "clientState": signer.client_state(address, "salesInvoices"),
                        "expirationDateTime": "2026-12-06T00:00:00Z",
                        "resource": f"api/v2.0/companies({address.company_id})/salesInvoices",
                        "changeType": "updated",
                        "lastModifiedDateTime": "2026-12-03T00:00:00Z",
                    }
                ]
            }
            with httpx.Client(timeout=30) as bc:
                started = time.monotonic()
                answer = bc.post(f"{url}{NOTIFICATION_PATH}/{signer.key(address)}", json=notice)
                took = time.monotonic() - started
            assert answer.status_code == 503
            assert 3.5 < took < 6, took
        finally:
            gateway.stop()


@contextmanager
def _registry_that_never_answers(nats_url: str) -> Iterator[None]:
    """Hears the gateway's command for a notice and never answers it (a registry stuck on
    its database), in a thread of its own: the browser tests hold this thread's loop."""
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def listen() -> None:
        connection = await nats.connect(nats_url)
        await connection.subscribe(RECORD_BUSINESS_CENTRAL_CHANGES, cb=_never_answer)
        await connection.flush()
        ready.set()
        await stop.wait()
        await connection.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(listen(),), daemon=True)
    thread.start()
    assert ready.wait(timeout=30), "the silent registry did not connect"
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        loop.close()


async def _never_answer(message: Msg) -> None:
    return None


def test_the_gateway_and_the_fetchers_say_the_same_notification_key_at_start(hub: Hub) -> None:
    """The gateway derives the key from HUB_SECRET_KEY, the fetchers hold it on its own
    (HUB_NOTIFICATION_KEY): a rotation that left one behind showed only as every notice
    refused. Each says the key's id at start."""
    said = {p.name: re.findall(r"notification_key_id\W*([0-9a-f]{12})", p.log()) for p in hub.processes}
    assert said["gateway"] and said["fetcher-1"] and said["fetcher-2"], said
    assert len({*said["gateway"], *said["fetcher-1"], *said["fetcher-2"]}) == 1, said
