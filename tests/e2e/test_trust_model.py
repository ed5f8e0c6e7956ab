"""The trust model end to end: a firm reads a client tenant only once that tenant granted
*this firm* access, one client per tenant and environment, and access ends when the firm
removes it or the client withdraws consent."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import Sandbox
from tests.e2e.conftest import Hub
from tests.support.connect import add_connected_client, client_access_page, client_admin, connect

pytestmark = pytest.mark.e2e


def _tenant(sandbox: Sandbox, domain: str) -> dict[str, Any]:
    tenants = httpx.get(f"{sandbox.base_url}/_sandbox/tenants", verify=sandbox.tls()).json()["tenants"]
    found: dict[str, Any] = next(t for t in tenants if t["domain"] == domain)
    return found


def _wait(what: Callable[[], Any], until: Callable[[Any], bool], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    value = what()
    while not until(value):
        assert time.monotonic() < deadline, f"never happened; last: {value}"
        time.sleep(0.3)
        value = what()
    return value


def _rows(api: httpx.Client, client_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = api.get("/api/v1/dashboard").raise_for_status().json()["rows"]
    return [row for row in rows if row["client_id"] == client_id]


def _client(api: httpx.Client, client_id: str) -> dict[str, Any]:
    """The client as the read model has it; empty until its ClientAdded is projected."""
    clients: list[dict[str, Any]] = api.get("/api/v1/clients").raise_for_status().json()["clients"]
    return next((c for c in clients if c["client_id"] == client_id), {})


def _access(state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda client: bool(client) and client["access"]["state"] == state


def _waiting_for_permission(client: dict[str, Any]) -> bool:
    failure = client.get("failure") or {}
    return bool(failure.get("kind") == "access_not_granted")


def test_a_firm_without_a_grant_reads_nothing_of_a_tenant_another_firm_was_granted(hub: Hub, sandbox: Sandbox) -> None:
    domain = "muhlbachgruppe.onmicrosoft.com"
    url = f"{sandbox.web_client}/{domain}/Production"
    granted = hub.client("gina@granted-accounting.example")
    granted_id = add_connected_client(sandbox, granted, {"name": "Mühlbach", "client_url": url})
    rows = _wait(lambda: _rows(granted, granted_id), lambda rows: bool(rows) and all(r["state"] == "ok" for r in rows))
    company_names = {row["company_name"] for row in rows}

    stranger = hub.client("sid@stranger-accounting.example")
    added = stranger.post("/api/v1/clients", json={"name": "Mühlbach too", "client_url": url})
    assert added.status_code == 202, added.text
    assert added.json()["access_granted"] is False
    mine = str(added.json()["client_id"])
    client = _wait(lambda: _client(stranger, mine), _waiting_for_permission)
    assert client["access"]["state"] == "waiting"
    assert "Connect link" in client["failure"]["fix"]
    # Neither the dashboard, nor a refresh, nor Test Client URL, nor a workbook reads it.
    assert all(row["company_id"] is None for row in _rows(stranger, mine))
    assert stranger.post("/api/v1/refresh", json={"client_id": mine}).status_code == 202
    tested = stranger.post("/api/v1/connection-tests", json={"client_url": url}, timeout=40).json()
    assert tested["status"] == "failed" and tested["failure"]["kind"] == "access_not_granted"
    assert tested.get("companies", []) == []
    foreign_company = rows[0]["company_id"]
    assert stranger.get(f"/api/v1/clients/{mine}/companies/{foreign_company}/workbook").status_code == 404
    assert stranger.get(f"/api/v1/clients/{granted_id}/companies/{foreign_company}/workbook").status_code == 404
    time.sleep(2)
    seen = stranger.get("/api/v1/dashboard").text + stranger.get("/api/v1/errors").text
    assert not [name for name in company_names if name in seen]
    # The live stream carries only the stranger's own client.
    with httpx.Client(base_url=hub.url, headers=dict(stranger.headers), timeout=httpx.Timeout(10, read=3)) as live:
        assert granted.post("/api/v1/refresh", json={"client_id": granted_id}).status_code == 202
        received: list[str] = []
        with live.stream("GET", "/api/v1/live") as stream:
            try:
                for line in stream.iter_lines():
                    received.append(line)
                    if len(received) > 200:
                        break
            except httpx.ReadTimeout:
                pass
    text = "\n".join(received)
    assert granted_id not in text and not [name for name in company_names if name in text]


def test_connect_grants_access_and_removing_it_stops_refreshes(hub: Hub, sandbox: Sandbox) -> None:
    domain = "cronus-sample.onmicrosoft.com"
    api = hub.client("cora@connect-accounting.example")
    added = api.post("/api/v1/clients", json={"name": "CRONUS", "client_url": f"{sandbox.web_client}/{domain}"})
    client_id = str(added.json()["client_id"])
    _wait(lambda: _client(api, client_id), _waiting_for_permission)

    # Someone of another organisation signs in there as a guest at most, and a guest grants
    # nothing, even one the client gave Business Central (an external accountant it invited).
    elsewhere = connect(sandbox, api, client_id, "admin@muhlbachgruppe.onmicrosoft.com")
    assert elsewhere.status_code == 400 and "not a guest account" in elsewhere.text, elsewhere.text[:500]
    assert _client(api, client_id)["access"]["state"] == "waiting"

    page = connect(sandbox, api, client_id, client_admin(domain))
    assert page.status_code == 200 and "can now read" in page.text, page.text[:500]
    client = _wait(lambda: _client(api, client_id), _access("granted"))
    assert client["access"]["method"] == "connect" and client["access"]["granted_by"] == client_admin(domain)
    _wait(lambda: _rows(api, client_id), lambda rows: bool(rows) and all(r["state"] == "ok" for r in rows))
    audit_actor = client["access"]["granted_by"]
    assert audit_actor.endswith(domain)

    company_id = _rows(api, client_id)[0]["company_id"]
    assert api.get(f"/api/v1/clients/{client_id}/companies/{company_id}/workbook").status_code == 200
    removed = api.delete(f"/api/v1/clients/{client_id}/access")
    assert removed.status_code == 202, removed.text
    client = _wait(lambda: _client(api, client_id), _access("revoked"))
    assert "removed in the hub" in client["access"]["reason"]
    assert api.post("/api/v1/refresh", json={"client_id": client_id}).status_code == 202
    _wait(lambda: _client(api, client_id), _waiting_for_permission)
    refused = api.get(f"/api/v1/clients/{client_id}/companies/{company_id}/workbook")
    assert refused.status_code == 403, refused.text
    assert refused.json()["detail"]["failure"]["kind"] == "access_not_granted"


def test_a_client_withdrawing_consent_ends_the_grant(hub: Hub, sandbox: Sandbox) -> None:
    domain = "nordlysgruppen.onmicrosoft.com"
    tenant = _tenant(sandbox, domain)
    api = hub.client("wes@withdrawn-accounting.example")
    client_id = add_connected_client(
        sandbox, api, {"name": "Nordlys", "client_url": f"{sandbox.web_client}/{domain}/Production"}
    )
    _wait(lambda: _client(api, client_id), _access("granted"))
    admin = httpx.Client(base_url=sandbox.base_url, verify=sandbox.tls())
    try:
        admin.put(f"/_sandbox/tenants/{tenant['id']}/consent", json={"consented": False}).raise_for_status()
        # The fetcher's cached token is refused first (credentials rejected, so it is
        # dropped, by each fetcher holding one); the next refresh asks Entra, which says the
        # consent is gone. Generous: on a loaded machine each round takes a while.
        deadline = time.monotonic() + 150
        while _client(api, client_id)["access"]["state"] != "revoked":
            assert time.monotonic() < deadline, _client(api, client_id)
            assert api.post("/api/v1/refresh", json={"client_id": client_id}).status_code == 202
            time.sleep(2)
        client = _client(api, client_id)
        assert "withdrew" in client["access"]["reason"]
        # Consent given again (perhaps for another firm) does not bring this firm's access back.
        admin.put(f"/_sandbox/tenants/{tenant['id']}/consent", json={"consented": True}).raise_for_status()
        assert api.post("/api/v1/refresh", json={"client_id": client_id}).status_code == 202
        _wait(lambda: _client(api, client_id), _waiting_for_permission)
    finally:
        admin.put(f"/_sandbox/tenants/{tenant['id']}/consent", json={"consented": True})


def test_a_tenant_written_as_domain_or_guid_is_one_client(hub: Hub, sandbox: Sandbox) -> None:
    domain = "cronus-sample.onmicrosoft.com"
    tenant = _tenant(sandbox, domain)
    api = hub.client("dora@dedup-accounting.example")
    first = api.post("/api/v1/clients", json={"name": "By domain", "client_url": f"{sandbox.web_client}/{domain}"})
    assert first.status_code == 202, first.text
    again = api.post(
        "/api/v1/clients", json={"name": "By id", "client_url": f"{sandbox.web_client}/{tenant['id']}/Production"}
    )
    assert again.status_code == 409, again.text
    assert again.json()["detail"]["field"] == "client_url"
    # BC's environment names ignore case: "production" is the same environment.
    lower = api.post(
        "/api/v1/clients", json={"name": "Lower", "client_url": f"{sandbox.web_client}/{domain}/production"}
    )
    assert lower.status_code == 409, lower.text
    assert "already uses this tenant" in lower.json()["detail"]["message"]
    unknown = api.post(
        "/api/v1/clients", json={"name": "Nobody", "client_url": f"{sandbox.web_client}/{uuid.uuid4()}/Production"}
    )
    assert unknown.status_code == 422 and "No Microsoft Entra tenant" in unknown.json()["detail"]["message"]


def test_a_connect_link_is_bound_to_its_firm_and_client(hub: Hub, sandbox: Sandbox) -> None:
    api = hub.client("lia@links-accounting.example")
    added = api.post(
        "/api/v1/clients", json={"name": "Links", "client_url": f"{sandbox.web_client}/cronus-sample.onmicrosoft.com"}
    )
    client_id = str(added.json()["client_id"])
    _wait(lambda: api.post(f"/api/v1/clients/{client_id}/connect-link").status_code, lambda code: code == 200)
    url = api.post(f"/api/v1/clients/{client_id}/connect-link").json()["url"]
    page = httpx.get(url)
    assert page.status_code == 200 and "Links" in page.text and "asks to read" in page.text
    tampered = url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB")
    refused = httpx.get(tampered)
    assert refused.status_code == 400 and "not valid" in refused.text
    assert httpx.get(f"{hub.url}/connect/callback").status_code == 400

    # Another site's page cannot submit the link's form to skip the page naming the firm:
    # it gets that page, and no sign-in starts; the hub's own page goes on to Microsoft.
    for elsewhere in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
        answer = httpx.post(url, headers=elsewhere)
        assert answer.status_code == 200 and "asks to read" in answer.text, (elsewhere, answer.status_code)
        # The grant is the tenant's, whichever environment the link names: the page says so.
        assert "for your whole organisation" in answer.text
    for here in ({"Sec-Fetch-Site": "same-origin"}, {"Origin": hub.url}, {}):
        assert httpx.post(url, headers=here).status_code == 303, here


def test_connect_while_entra_does_not_answer_says_so_and_logs_no_link(
    hub: Hub, sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A Connect link is a credential (7 days); Entra failing to give the tenant's sign-in
    metadata used to crash the request, whose log line carried the link's path. The page
    says Entra did not answer, and a try a little later goes on to Microsoft."""
    api = hub.client("ezra@entra-away-accounting.example")
    domain = "cronus-sample.onmicrosoft.com"
    added = api.post("/api/v1/clients", json={"name": "Away", "client_url": f"{sandbox.web_client}/{domain}"})
    client_id = str(added.json()["client_id"])
    _wait(lambda: api.post(f"/api/v1/clients/{client_id}/connect-link").status_code, lambda code: code == 200)
    link = api.post(f"/api/v1/clients/{client_id}/connect-link").json()["url"]
    token = link.rsplit("/", 1)[-1]
    # A replica of its own: its msal apps are made at the first Connect of each tenant.
    replica, url = hub.start_gateway_replica("gateway-entra-away", tmp_path_factory.mktemp("entra-away"))
    try:
        with httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls(), timeout=10) as admin:
            fault = {"kind": "entra_discovery_unavailable", "retry_after_seconds": 5, "count": 1}
            admin.put(f"/tenants/{domain}/faults", json=fault).raise_for_status()
            try:
                away = httpx.post(f"{url}/connect/{token}")
                assert away.status_code == 503, away.text[:500]
                assert "did not answer" in away.text and "Nothing was changed" in away.text
            finally:
                admin.delete(f"/tenants/{domain}/faults").raise_for_status()
        # Told at once for a few seconds (entra_apps.UNREACHABLE_FOR_SECONDS), then tried again.
        _wait(lambda: httpx.post(f"{url}/connect/{token}").status_code, lambda code: code == 303, timeout=30)
    finally:
        replica.stop()
    assert token not in replica.log()
    assert "Entra gave no sign-in metadata" in replica.log()


def test_a_client_withdraws_one_firms_access_and_the_others_keep_theirs(hub: Hub, sandbox: Sandbox) -> None:
    domain = "cronus-sample.onmicrosoft.com"
    url = f"{sandbox.web_client}/{domain}/Production"
    kept, dropped = hub.client("kim@kept-accounting.example"), hub.client("dan@dropped-accounting.example")
    kept_id = add_connected_client(sandbox, kept, {"name": "CRONUS", "client_url": url})
    dropped_id = add_connected_client(sandbox, dropped, {"name": "CRONUS", "client_url": url})
    dropped_firm = dropped.get("/api/v1/me").json()["firm_id"]

    browser, page = client_access_page(hub.url, sandbox, client_admin(domain))
    assert page.status_code == 200
    assert "Kept-Accounting" in page.text or "kept-accounting" in page.text.lower()
    assert dropped_firm in page.text
    withdrawn = browser.post("/client-access/withdraw", data={"firm_id": dropped_firm}, follow_redirects=True)
    assert withdrawn.status_code == 200 and "Access withdrawn" in withdrawn.text
    assert dropped_firm not in withdrawn.text

    client = _wait(lambda: _client(dropped, dropped_id), _access("revoked"))
    assert client["access"]["reason"] == f"Removed by {client_admin(domain)} of the client's organisation"
    assert _client(kept, kept_id)["access"]["state"] == "granted"
    # Withdrawing again, or for a firm the tenant never let in, changes nothing.
    again = browser.post("/client-access/withdraw", data={"firm_id": dropped_firm})
    assert again.status_code == 404
    # Another organisation's person sees only their own tenant's firms.
    _, elsewhere = client_access_page(hub.url, sandbox, "admin@elbufergruppe.onmicrosoft.com")
    assert dropped_firm not in elsewhere.text and "kept-accounting" not in elsewhere.text.lower()
