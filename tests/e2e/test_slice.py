"""The thin slice through the real processes: gateway → registry → fetcher → sandbox →
CompanySnapshot → read model → GET /api/v1/dashboard."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import msal
import pytest

from hub_common.events import ClientAdded, CompanySnapshot, RefreshRequested
from tests.conftest import Sandbox
from tests.e2e.conftest import Hub
from tests.support.connect import add_connected_client
from tests.support.events import firm_events, firm_snapshots, requested_refresh
from tests.support.time_zones import zone_off_utcs_date

pytestmark = pytest.mark.e2e
SECRET_KEY = "e2e-secret-key-long-enough-for-hmac-sha256"


def _independent_cash(sandbox: Sandbox, tenant: str, company_id: str) -> Decimal:
    """Cash as the test computes it itself, straight from the sandbox's BC API."""
    http = httpx.Client(verify=sandbox.tls(), timeout=20)
    app = msal.ConfidentialClientApplication(
        sandbox.client_id,
        client_credential=sandbox.client_secret,
        authority=f"{sandbox.base_url}/{tenant}",
        http_client=http,
        instance_discovery=False,
    )
    token = app.acquire_token_for_client(scopes=["https://api.businesscentral.dynamics.com/.default"])["access_token"]
    accounts = http.get(
        f"{sandbox.base_url}/v2.0/{tenant}/Production/api/v2.0/companies({company_id})/accounts",
        headers={"Authorization": f"Bearer {token}"},
    ).json()["value"]
    return sum(
        (
            Decimal(str(a["netChange"]))
            for a in accounts
            if a["category"] == "Assets" and a["accountType"] == "Posting" and a["subCategory"] == "Cash"
        ),
        Decimal(0),
    )


def _wait_for_rows(api: httpx.Client, predicate: Any, hub: Hub, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = api.get("/api/v1/dashboard").raise_for_status().json()["rows"]
        if predicate(rows):
            return rows
        time.sleep(0.3)
    raise AssertionError(f"dashboard never matched; last rows: {rows}\n{hub.logs()}")


def test_adding_a_client_puts_its_companies_on_the_dashboard(hub: Hub, sandbox: Sandbox) -> None:
    tenants = httpx.get(f"{sandbox.base_url}/_sandbox/tenants", verify=sandbox.tls()).json()["tenants"]
    tenant = next(t for t in tenants if t["consented"] and t["domain"] != "cronus-sample.onmicrosoft.com")
    production = next(e for e in tenant["environments"] if e["name"] == "Production")
    api = hub.client("alice@northwind-accounting.example")
    card = {"name": tenant["display_name"], "client_url": production["client_url"]}
    add_connected_client(sandbox, api, card)

    company_ids = {c["id"] for c in production["companies"]}
    rows = _wait_for_rows(
        api,
        lambda rows: {r["company_id"] for r in rows if r["state"] == "ok"} >= company_ids,
        hub,
    )
    for row in rows:
        assert row["client_name"] == tenant["display_name"]
        expected = _independent_cash(sandbox, tenant["id"], row["company_id"])
        assert Decimal(row["values"]["cash"]) == expected
        details = api.get(f"/api/v1/clients/{row['client_id']}/companies/{row['company_id']}").json()
        assert Decimal(details["figures"]["cash"]["total"]) == expected
        assert row["as_of"].endswith(("Z", "+00:00")), row["as_of"]
        assert row["web_client_link"].startswith(sandbox.web_client)


def test_a_card_saved_by_someone_else_since_it_was_read_is_not_overwritten(hub: Hub, sandbox: Sandbox) -> None:
    """Two accountants with one card open: the later save replaced the whole card and undid
    the earlier one's change without a word. Sent back with the version it was read at, a
    save on a card saved since is refused (412); left out, it goes through as before."""
    tenants = httpx.get(f"{sandbox.base_url}/_sandbox/tenants", verify=sandbox.tls()).json()["tenants"]
    tenant = next(t for t in tenants if not t["consented"])
    api = hub.client("carla@versioned-accounting.example")
    url = next(e for e in tenant["environments"] if e["name"] == "Production")["client_url"]
    added = api.post("/api/v1/clients", json={"name": "Versioned client", "client_url": url})
    assert added.status_code == 202, added.text
    client_id = added.json()["client_id"]

    def card_of(after: int | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + 15
        while True:
            listed = [c for c in api.get("/api/v1/clients").json()["clients"] if c["client_id"] == client_id]
            if listed and listed[0]["card_version"] != after:
                return dict(listed[0])
            assert time.monotonic() < deadline, "the card never came back changed"
            time.sleep(0.2)

    read = card_of()
    first = {**read["card"], "notes": "Year end in March"}
    saved = api.put(f"/api/v1/clients/{client_id}", json=first, headers={"If-Match": f'"{read["card_version"]}"'})
    assert saved.status_code == 202, saved.text
    after = card_of(after=read["card_version"])
    assert after["card"]["notes"] == "Year end in March"
    # The other accountant's page still holds the card as first read.
    late = {**read["card"], "phone": "+45 12 34 56 78"}
    refused = api.put(f"/api/v1/clients/{client_id}", json=late, headers={"If-Match": f'"{read["card_version"]}"'})
    assert refused.status_code == 412, refused.text
    assert "Someone saved this client card since you opened it" in refused.json()["detail"]["message"]
    assert card_of(after=None)["card"]["notes"] == "Year end in March"
    # A script that sends no version saves as before.
    assert api.put(f"/api/v1/clients/{client_id}", json={**after["card"], "phone": "+45 1"}).status_code == 202

    # Two saves on one read, back to back: the second comes while the dashboard's read model
    # may still show the card as read, and the registry refuses it all the same (it took it
    # and undid the first).
    read = card_of(after=after["card_version"])
    version = {"If-Match": f'"{read["card_version"]}"'}
    one = api.put(f"/api/v1/clients/{client_id}", json={**read["card"], "notes": "Audit in May"}, headers=version)
    other = api.put(f"/api/v1/clients/{client_id}", json={**read["card"], "contact_name": "Ole"}, headers=version)
    assert (one.status_code, other.status_code) == (202, 412), other.text
    final = card_of(after=read["card_version"])
    assert (final["card"]["notes"], final["card"]["contact_name"]) == ("Audit in May", read["card"]["contact_name"])


def test_another_firm_sees_nothing_and_gets_404(hub: Hub, sandbox: Sandbox) -> None:
    owner = hub.client("bob@fabrikam-accounting.example")
    outsider = hub.client("eve@contoso-audit.example")
    created = owner.post(
        "/api/v1/clients",
        json={
            "name": "Fabrikam client",
            "client_url": f"{sandbox.web_client}/cronus-sample.onmicrosoft.com/Production",
        },
    )
    assert created.status_code == 202, created.text
    assert created.json()["access_granted"] is False
    client_id = created.json()["client_id"]
    _wait_for_rows(owner, lambda rows: any(r["client_id"] == client_id for r in rows), hub)
    assert outsider.get("/api/v1/dashboard").json()["rows"] == []
    assert outsider.delete(f"/api/v1/clients/{client_id}").status_code == 404
    assert outsider.post("/api/v1/refresh", json={"client_id": client_id}).status_code == 404


def test_bad_input_gets_a_clear_422_and_stores_nothing(hub: Hub) -> None:
    api = hub.client("carol@adatum-accounting.example")
    bad = api.post(
        "/api/v1/clients", json={"name": "X", "client_url": "https://businesscentral.dynamics.com/Production"}
    )
    assert bad.status_code == 422
    assert bad.json()["detail"]["field"] == "client_url"
    assert "no tenant" in bad.json()["detail"]["message"]
    assert api.post("/api/v1/clients", json={"name": "", "client_url": "x"}).status_code == 422
    assert (
        api.post("/api/v1/clients", content=b"{not json", headers={"content-type": "application/json"}).status_code
        == 422
    )
    time.sleep(1)
    assert api.get("/api/v1/clients").json()["clients"] == []


def test_requests_without_a_valid_token_are_refused(hub: Hub) -> None:
    assert httpx.get(f"{hub.url}/api/v1/dashboard").status_code == 401
    forged = httpx.get(f"{hub.url}/api/v1/dashboard", headers={"Authorization": "Bearer abc.def.ghi"})
    assert forged.status_code == 401
    consumer = hub.client("someone@gmail.com").get("/api/v1/dashboard")
    assert consumer.status_code == 403
    assert "work or school" in consumer.json()["detail"]


def test_health_reports_broker_and_database(hub: Hub) -> None:
    assert httpx.get(f"{hub.url}/healthz").json() == {"status": "ok", "broker": True, "database": True}


def test_each_change_of_a_cards_account_numbers_is_counted_and_travels_with_the_figures(
    hub: Hub, sandbox: Sandbox, nats_url: str
) -> None:
    """So that figures made with numbers the card no longer names (a refresh requested before
    the change, reading BC after the one since) never replace the newer ones."""
    api = hub.client("erin@northwind-ledger.example")
    url = f"{sandbox.web_client}/cronus-sample.onmicrosoft.com/Production"
    client_id = add_connected_client(sandbox, api, {"name": "CRONUS", "client_url": url})
    firm_id = uuid.UUID(api.get("/api/v1/me").json()["firm_id"])
    rows = _wait_for_rows(api, lambda rows: any(r["client_id"] == client_id for r in rows), hub)
    company_id = next(r["company_id"] for r in rows if r["client_id"] == client_id)

    def save_and_refresh(card: dict[str, Any]) -> tuple[RefreshRequested, CompanySnapshot]:
        """Save the card, refresh one company (the sample tenant is every test's: one read at a
        time, so no test's reads are throttled for this one), and wait for its snapshot."""
        assert api.put(f"/api/v1/clients/{client_id}", json=card).status_code == 202
        # The registry handles the save before the refresh: both are its commands, in order.
        started = api.post("/api/v1/refresh", json={"client_id": client_id, "company_id": company_id})
        refresh_id = uuid.UUID(started.json()["refresh_ids"][0])
        requested = requested_refresh(nats_url, firm_id, refresh_id)
        deadline = time.monotonic() + 60
        while not (read := [s for s in firm_snapshots(nats_url, firm_id) if s.refresh_id == refresh_id]):
            assert time.monotonic() < deadline, f"the refresh's snapshot never came\n{hub.logs()}"
            time.sleep(0.3)
        return requested, read[0]

    def cash_source(snapshot: CompanySnapshot) -> str | None:
        return snapshot.figures.cash.source if snapshot.figures.cash else None

    renamed, read = save_and_refresh({"name": "CRONUS renamed", "client_url": url})
    assert (renamed.accounts_revision, read.accounts_revision) == (0, 0)
    named, read = save_and_refresh({"name": "CRONUS renamed", "client_url": url, "cash_account_numbers": ["10110"]})
    assert (named.accounts_revision, named.cash_account_numbers) == (1, ["10110"])
    assert (read.accounts_revision, cash_source(read)) == (1, "client_card")
    again, read = save_and_refresh({"name": "CRONUS", "client_url": url, "cash_account_numbers": ["10110"]})
    assert (again.accounts_revision, read.accounts_revision) == (1, 1)
    cleared, read = save_and_refresh({"name": "CRONUS", "client_url": url})
    assert (cleared.accounts_revision, cleared.cash_account_numbers) == (2, None)
    assert read.accounts_revision == 2 and cash_source(read) != "client_card"


def test_a_cards_time_zone_decides_the_clients_today_in_its_figures(hub: Hub, sandbox: Sandbox, nats_url: str) -> None:
    """An accountant east or west of UTC sees what is overdue today where the client is: the
    figures of a refresh count days from the date in the card's time zone."""
    api = hub.client("erin@pacific-ledger.example")
    url = f"{sandbox.web_client}/cronus-sample.onmicrosoft.com/Production"
    zone = zone_off_utcs_date(datetime.now(UTC))
    client_id = add_connected_client(sandbox, api, {"name": "CRONUS", "client_url": url, "time_zone": zone})
    firm_id = uuid.UUID(api.get("/api/v1/me").json()["firm_id"])
    [listed] = [c for c in api.get("/api/v1/clients").json()["clients"] if c["client_id"] == client_id]
    assert listed["card"]["time_zone"] == zone
    started = api.post("/api/v1/refresh", json={"client_id": client_id})
    assert started.status_code == 202, started.text
    refresh_id = uuid.UUID(started.json()["refresh_ids"][0])
    assert requested_refresh(nats_url, firm_id, refresh_id).time_zone == zone
    deadline = time.monotonic() + 60
    while not (read := [s for s in firm_snapshots(nats_url, firm_id) if s.refresh_id == refresh_id]):
        assert time.monotonic() < deadline, f"the refresh's snapshot never came\n{hub.logs()}"
        time.sleep(0.3)
    for snapshot in read:
        client_date = snapshot.read_at.astimezone(ZoneInfo(zone)).date()
        assert client_date != snapshot.read_at.astimezone(UTC).date()  # else the test proves nothing
        assert snapshot.exchange_rates is not None and snapshot.exchange_rates.as_of == client_date
        forecast = snapshot.figures.cash_flow_forecast
        assert forecast is not None and forecast.weeks[0].week_start == client_date

    # Emptied, the card's day is UTC's again; a place that is not one is refused on its field.
    assert api.put(f"/api/v1/clients/{client_id}", json={"name": "CRONUS", "client_url": url}).status_code == 202
    for bad in ("Mars/Olympus_Mons", "US/Eastern", "Etc/GMT+5", "../zoneinfo/UTC", "Europe/" + "x" * 60):
        refused = api.put(f"/api/v1/clients/{client_id}", json={"name": "CRONUS", "client_url": url, "time_zone": bad})
        assert refused.status_code == 422 and "time_zone" in refused.text, (bad, refused.text)
        assert "IANA time zone" in refused.text or "at most 64" in refused.text, refused.text
    deadline = time.monotonic() + 10
    while (
        "time_zone"
        in next(c for c in api.get("/api/v1/clients").json()["clients"] if c["client_id"] == client_id)["card"]
    ):
        assert time.monotonic() < deadline, "the emptied time zone never reached the card"
        time.sleep(0.2)


def test_a_partner_hosted_clients_rows_open_its_own_web_client(hub: Hub, sandbox: Sandbox, nats_url: str) -> None:
    """A client on a partner's Embed app gives its Client URL on the app's host; the rows'
    "Go to Business Central" opens that host, where its environments are."""
    api = hub.client("pia@embedded-partners.example")
    url = "https://contosofamily.bc.dynamics.com/cronus-sample.onmicrosoft.com/Production"
    client_id = add_connected_client(sandbox, api, {"name": "Embedded client", "client_url": url})
    firm_id = uuid.UUID(api.get("/api/v1/me").json()["firm_id"])
    [added] = [e.data for e in firm_events(nats_url, firm_id, "ClientAdded") if isinstance(e.data, ClientAdded)]
    assert added.connection.web_client_host == "contosofamily.bc.dynamics.com"
    # Every company read (a row shows its link from its first snapshot on; one still being
    # read has none yet).
    rows = _wait_for_rows(
        api,
        lambda rows: (
            (mine := [r for r in rows if r["client_id"] == client_id]) != [] and all(r["web_client_link"] for r in mine)
        ),
        hub,
    )
    links = {r["web_client_link"] for r in rows if r["client_id"] == client_id}
    assert all(
        link.startswith("https://contosofamily.bc.dynamics.com/cronus-sample.onmicrosoft.com/Production?")
        for link in links
    )


def test_a_clients_own_tax_accounts_override_the_rule_on_every_refresh(hub: Hub, sandbox: Sandbox) -> None:
    api = hub.client("dave@tailspin-accounting.example")
    url = f"{sandbox.web_client}/cronus-sample.onmicrosoft.com/Production"
    card = {"name": "CRONUS", "client_url": url, "tax_account_numbers": ["10110"]}
    client_id = add_connected_client(sandbox, api, card)

    def overridden(rows: list[dict[str, Any]]) -> bool:
        mine = [r for r in rows if r["client_id"] == client_id]
        return bool(mine) and all(r["state"] == "ok" for r in mine)

    rows = _wait_for_rows(api, overridden, hub)
    first_as_of = {r["company_id"]: r["as_of"] for r in rows}

    def taxes(row: dict[str, Any]) -> dict[str, Any]:
        details = api.get(f"/api/v1/clients/{client_id}/companies/{row['company_id']}").raise_for_status().json()
        figure: dict[str, Any] = details["figures"]["taxes_due"]
        return figure

    for row in rows:
        taxes_due = taxes(row)
        assert "override" in taxes_due["rule"]
        assert Decimal(row["values"]["taxes_due"]) == Decimal(taxes_due["amount"])
        assert [a["number"] for a in taxes_due["accounts"]] in (["10110"], [])
    assert api.post("/api/v1/refresh", json={"client_id": client_id}).status_code == 202
    refreshed = _wait_for_rows(
        api, lambda rows: overridden(rows) and all(r["as_of"] != first_as_of.get(r["company_id"]) for r in rows), hub
    )
    assert all("override" in taxes(r)["rule"] for r in refreshed)
    bad = api.post(
        "/api/v1/clients", json={"name": "X", "client_url": url, "tax_account_numbers": ["no spaces please"]}
    )
    assert bad.status_code == 422


def test_a_clients_own_cash_accounts_replace_the_rule_and_the_cues(hub: Hub, sandbox: Sandbox) -> None:
    api = hub.client("erin@fabrikam-ledger.example")
    url = f"{sandbox.web_client}/cronus-sample.onmicrosoft.com/Production"
    card = {"name": "CRONUS", "client_url": url, "cash_account_numbers": ["10110", "10130"]}
    client_id = add_connected_client(sandbox, api, card)

    def mine_ok(rows: list[dict[str, Any]]) -> bool:
        mine = [r for r in rows if r["client_id"] == client_id]
        return bool(mine) and all(r["state"] == "ok" for r in mine)

    def cash(row: dict[str, Any]) -> dict[str, Any]:
        details = api.get(f"/api/v1/clients/{client_id}/companies/{row['company_id']}").raise_for_status().json()
        figure: dict[str, Any] = details["figures"]["cash"]
        return figure

    rows = [r for r in _wait_for_rows(api, mine_ok, hub) if r["client_id"] == client_id]
    for row in rows:
        figure = cash(row)
        assert figure["source"] == "client_card"
        assert [a["number"] for a in figure["accounts"]] == ["10110", "10130"]
        assert Decimal(figure["total"]) == sum(Decimal(a["balance"]) for a in figure["accounts"])
        assert Decimal(row["values"]["cash"]) == Decimal(figure["total"])
    [listed] = [c for c in api.get("/api/v1/clients").json()["clients"] if c["client_id"] == client_id]
    assert listed["card"]["cash_account_numbers"] == ["10110", "10130"]

    # Emptied on the card, the figure is BC's own Cash Accounts total again on the next refresh.
    first_as_of = {r["company_id"]: r["as_of"] for r in rows}
    changed = {**card, "cash_account_numbers": None}
    assert api.put(f"/api/v1/clients/{client_id}", json=changed).status_code == 202
    assert api.post("/api/v1/refresh", json={"client_id": client_id}).status_code == 202
    refreshed = _wait_for_rows(
        api, lambda rows: mine_ok(rows) and all(r["as_of"] != first_as_of.get(r["company_id"]) for r in rows), hub
    )
    sources = [(r["company_name"], r["as_of"], cash(r)["source"]) for r in refreshed if r["client_id"] == client_id]
    # BC's own total again: the cues', or API v2.0's when the cue services are not to be had
    # (a fast path only: an earlier test's slow or throttled cues on this sample tenant, which
    # every test shares, leave its environment on API v2.0 for a while).
    assert all(source in ("cues", "api") for _, _, source in sources), f"{sources}\n{hub.logs()}"
    for bad in (["1 0"], [], ["x" * 21], ["10110"] * 101):
        refused = api.put(f"/api/v1/clients/{client_id}", json={**card, "cash_account_numbers": bad})
        assert refused.status_code == 422, bad


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ""),
        ("name", "   "),
        ("name", "x" * 251),
        ("name", "two\nlines"),
        ("client_url", ""),
        ("client_url", "https://evil.example/contoso.com/Production"),
        ("client_url", "http://businesscentral.dynamics.com/contoso.com/Production"),
        ("contact_name", "y" * 501),
        ("email", "not-an-address"),
        ("phone", "call me maybe"),
        ("notes", "z" * 4001),
        ("notes", "nul\x00byte"),
        ("assigned_accountant_id", "not-a-uuid"),
        ("assigned_accountant_id", "00000000-0000-0000-0000-000000000001"),
        ("tax_account_numbers", []),
        ("tax_account_numbers", ["a b"]),
        ("time_zone", "Mars/Olympus_Mons"),
        ("time_zone", "Etc/UTC"),
        ("time_zone", "Europe/Amsterdam; DROP TABLE"),
        ("time_zone", ""),
        ("unknown_field", "x"),
    ],
)
def test_every_card_field_refuses_bad_input_and_stores_nothing(hub: Hub, field: str, value: object) -> None:
    api = hub.client("hank@badinput-accounting.example")
    card = {"name": "Fine", "client_url": "https://businesscentral.dynamics.com/contoso.com/Production", field: value}
    answer = api.post("/api/v1/clients", json=card)
    assert answer.status_code == 422, answer.text
    assert field in answer.text
    assert api.get("/api/v1/clients").json()["clients"] == []
