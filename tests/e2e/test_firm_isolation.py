"""Invariant 4, route by route: a second firm, with its own valid credentials, gets 404 for
every id of the first firm and never a byte of its data, on every route of the OpenAPI
document and every page.

The cases are keyed by method and path; a test compares them with the gateway's routes, so
a route added without a case here fails the suite until someone decides how it is fenced.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import openpyxl
import pytest

from hub_common.change_notifications import CompanyAddress, NotificationSigner
from tests.conftest import Sandbox
from tests.e2e.conftest import Hub
from tests.support.connect import add_connected_client
from tests.support.routes import gateway_routes

pytestmark = pytest.mark.e2e

VICTIM = "yara@victim-accounting.example"
INTRUDER = "zed@intruder-accounting.example"
# A colleague the victim's firm invited and who has not joined yet.
VICTIMS_INVITEE = "xavier.pending@victim-accounting.example"
CARD = {"name": "Changed", "client_url": "https://businesscentral.dynamics.com/contoso.com/Production"}
# Holds for any company: the victim's refresh below may well raise an alert the probes must not see.
ALERT_RULE = {"name": "Victim's low cash", "figure": "cash", "comparison": "below", "threshold": "1000000000000000"}


@dataclass(frozen=True)
class Victim:
    client_id: str
    client_name: str
    company_id: str
    company_name: str
    test_id: str
    token_id: str
    view_id: str
    run_id: str
    rule_id: str
    accountant_id: str
    invitation_id: str

    def markers(self) -> list[str]:
        """What must never appear in an answer to another firm."""
        return [
            self.client_id,
            self.client_name,
            self.company_id,
            self.company_name,
            self.token_id,
            self.view_id,
            self.rule_id,
            self.invitation_id,
            VICTIMS_INVITEE,
        ]


@pytest.fixture(scope="module")
def victim(hub: Hub, sandbox: Sandbox) -> Victim:
    """A firm with a connected client, a company read from BC, a connection test, an API
    token, a saved view and a refresh run."""
    owner = hub.client(VICTIM)
    url = f"{sandbox.web_client}/cronus-sample.onmicrosoft.com/Production"
    client_name = f"Victim client {uuid.uuid4().hex[:8]}"
    client_id = add_connected_client(sandbox, owner, {"name": client_name, "client_url": url})
    deadline = time.monotonic() + 60
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not any(r["state"] == "ok" for r in rows):
        rows = owner.get("/api/v1/dashboard").json()["rows"]
        time.sleep(0.3)
    company = next(r for r in rows if r["state"] == "ok")
    test_id = owner.post("/api/v1/connection-tests", json={"client_url": url}, timeout=40).json()["test_id"]
    token_id = owner.post("/api/v1/tokens", json={"name": "victim"}).json()["id"]
    view = owner.post("/api/v1/views", json={"name": "Victim view", "query": {}})
    assert view.status_code == 201, view.text
    # An alert rule on the client, before the refresh that raises its alerts.
    rule = owner.post("/api/v1/alert-rules", json={**ALERT_RULE, "client_id": client_id})
    assert rule.status_code == 201, rule.text
    run = owner.post("/api/v1/refresh", json={"client_id": client_id})
    assert run.status_code == 202, run.text
    # A schedule of the client's own, which names it in GET /api/v1/refresh-schedule.
    own = owner.put(f"/api/v1/clients/{client_id}/refresh-schedule", json={"every_minutes": 120})
    assert own.status_code == 202, own.text
    invited = owner.post("/api/v1/accountants/invitations", json={"email": VICTIMS_INVITEE, "role": "admin"})
    assert invited.status_code == 202, invited.text
    [invitation] = owner.get("/api/v1/accountants/invitations").json()
    return Victim(
        client_id=client_id,
        client_name=client_name,
        company_id=company["company_id"],
        company_name=company["company_name"],
        test_id=test_id,
        token_id=token_id,
        view_id=view.json()["view_id"],
        run_id=run.json()["run_id"],
        rule_id=rule.json()["rule_id"],
        accountant_id=owner.get("/api/v1/me").json()["accountant_id"],
        invitation_id=invitation["invitation_id"],
    )


Probe = Callable[[httpx.Client, Victim], httpx.Response]
NOT_FOUND = 404


def _workbook_text(answer: httpx.Response) -> str:
    """Every cell of an .xlsx answer as text (the body itself is compressed)."""
    if not answer.headers.get("content-type", "").startswith("application/vnd.openxmlformats"):
        return answer.text
    book = openpyxl.load_workbook(io.BytesIO(answer.content), read_only=True)
    return "\n".join(
        str(cell) for sheet in book.worksheets for row in sheet.iter_rows(values_only=True) for cell in row
    )


def _live_text(api: httpx.Client, victim: Victim) -> str:
    """What the live stream sends the intruder in a few seconds, while the victim refreshes."""
    listener = httpx.Client(base_url=str(api.base_url), headers=dict(api.headers), timeout=httpx.Timeout(10, read=3))
    received: list[str] = []
    with listener.stream("GET", "/api/v1/live") as stream:
        assert stream.status_code == 200
        deadline = time.monotonic() + 4
        try:
            for line in stream.iter_lines():
                received.append(line)
                if time.monotonic() > deadline:
                    break
        except httpx.ReadTimeout:
            pass  # the stream stays open; silence is all it had to say
    return "\n".join(received)


# (what the intruder sends, the status it must get or None for "any 2xx/4xx without the data")
CASES: dict[str, tuple[Probe, int | None]] = {
    "GET /healthz": (lambda api, v: api.get("/healthz"), None),
    "GET /api/v1/clients": (lambda api, v: api.get("/api/v1/clients"), None),
    "POST /api/v1/clients": (lambda api, v: api.post("/api/v1/clients", json={"name": "Mine", **CARD}), None),
    "PUT /api/v1/clients/{client_id}": (lambda api, v: api.put(f"/api/v1/clients/{v.client_id}", json=CARD), 404),
    "DELETE /api/v1/clients/{client_id}": (lambda api, v: api.delete(f"/api/v1/clients/{v.client_id}"), 404),
    # Only the intruder's own cards can take the zone (the victim's is checked in
    # test_missing_time_zones.py).
    "POST /api/v1/clients/missing-time-zones": (
        lambda api, v: api.post("/api/v1/clients/missing-time-zones", json={"time_zone": "Europe/Amsterdam"}),
        None,
    ),
    "POST /api/v1/clients/{client_id}/connect-link": (
        lambda api, v: api.post(f"/api/v1/clients/{v.client_id}/connect-link"),
        404,
    ),
    "DELETE /api/v1/clients/{client_id}/access": (
        lambda api, v: api.delete(f"/api/v1/clients/{v.client_id}/access"),
        404,
    ),
    "POST /api/v1/refresh": (
        lambda api, v: api.post("/api/v1/refresh", json={"client_id": v.client_id, "company_id": v.company_id}),
        404,
    ),
    "GET /api/v1/tokens": (lambda api, v: api.get("/api/v1/tokens"), None),
    "POST /api/v1/tokens": (lambda api, v: api.post("/api/v1/tokens", json={"name": "mine"}), None),
    "DELETE /api/v1/tokens/{token_id}": (lambda api, v: api.delete(f"/api/v1/tokens/{v.token_id}"), 404),
    "POST /api/v1/connection-tests": (
        lambda api, v: api.post(
            "/api/v1/connection-tests", json={"client_url": CARD["client_url"], "client_id": v.client_id}
        ),
        404,
    ),
    "GET /api/v1/connection-tests/{test_id}": (lambda api, v: api.get(f"/api/v1/connection-tests/{v.test_id}"), 404),
    "GET /api/v1/me": (lambda api, v: api.get("/api/v1/me"), None),
    "GET /api/v1/accountants": (lambda api, v: api.get("/api/v1/accountants"), None),
    "POST /api/v1/accountants/invitations": (
        lambda api, v: api.post("/api/v1/accountants/invitations", json={"email": VICTIM}),
        None,
    ),
    "DELETE /api/v1/accountants/{accountant_id}": (
        lambda api, v: api.delete(f"/api/v1/accountants/{v.accountant_id}"),
        404,
    ),
    "GET /api/v1/accountants/invitations": (lambda api, v: api.get("/api/v1/accountants/invitations"), None),
    "DELETE /api/v1/accountants/invitations/{invitation_id}": (
        lambda api, v: api.delete(f"/api/v1/accountants/invitations/{v.invitation_id}"),
        404,
    ),
    "GET /api/v1/clients/{client_id}/companies/{company_id}/workbook": (
        lambda api, v: api.get(f"/api/v1/clients/{v.client_id}/companies/{v.company_id}/workbook"),
        404,
    ),
    "GET /api/v1/key-figures/workbook": (lambda api, v: api.get("/api/v1/key-figures/workbook"), None),
    "GET /api/v1/dashboard": (lambda api, v: api.get("/api/v1/dashboard", params={"client_id": v.client_id}), None),
    "GET /api/v1/columns": (lambda api, v: api.get("/api/v1/columns"), None),
    "GET /api/v1/preferences": (lambda api, v: api.get("/api/v1/preferences"), None),
    "PUT /api/v1/preferences": (lambda api, v: api.put("/api/v1/preferences", json={}), None),
    "GET /api/v1/views": (lambda api, v: api.get("/api/v1/views"), None),
    "POST /api/v1/views": (lambda api, v: api.post("/api/v1/views", json={"name": "Mine", "query": {}}), None),
    "DELETE /api/v1/views/{view_id}": (lambda api, v: api.delete(f"/api/v1/views/{v.view_id}"), 404),
    "GET /api/v1/clients/{client_id}/companies/{company_id}": (
        lambda api, v: api.get(f"/api/v1/clients/{v.client_id}/companies/{v.company_id}"),
        404,
    ),
    "GET /api/v1/errors": (lambda api, v: api.get("/api/v1/errors", params={"client_id": v.client_id}), None),
    "GET /api/v1/problems": (
        lambda api, v: api.get("/api/v1/problems", params={"client_id": v.client_id, "status": "all"}),
        None,
    ),
    # An unknown run and another firm's run are alike: nothing refreshed, nothing named.
    "GET /api/v1/refresh-runs/{run_id}": (lambda api, v: api.get(f"/api/v1/refresh-runs/{v.run_id}"), None),
    "GET /api/v1/live": (lambda api, v: httpx.Response(200, text=_live_text(api, v)), None),
    "GET /api/v1/refresh-schedule": (lambda api, v: api.get("/api/v1/refresh-schedule"), None),
    "GET /api/v1/alert-rules": (lambda api, v: api.get("/api/v1/alert-rules"), None),
    "GET /api/v1/alerts": (lambda api, v: api.get("/api/v1/alerts?status=all"), None),
    "GET /api/v1/alerts/markers": (
        lambda api, v: api.get("/api/v1/alerts/markers", params={"client_id": v.client_id}),
        None,
    ),
    "POST /api/v1/alert-rules": (
        lambda api, v: api.post("/api/v1/alert-rules", json={**ALERT_RULE, "client_id": v.client_id}),
        404,
    ),
    "PUT /api/v1/alert-rules/{rule_id}": (
        lambda api, v: api.put(f"/api/v1/alert-rules/{v.rule_id}", json=ALERT_RULE),
        404,
    ),
    "DELETE /api/v1/alert-rules/{rule_id}": (lambda api, v: api.delete(f"/api/v1/alert-rules/{v.rule_id}"), 404),
    "PUT /api/v1/refresh-schedule": (
        lambda api, v: api.put("/api/v1/refresh-schedule", json={"every_minutes": 60}),
        None,
    ),
    "PUT /api/v1/clients/{client_id}/refresh-schedule": (
        lambda api, v: api.put(f"/api/v1/clients/{v.client_id}/refresh-schedule", json={"every_minutes": 15}),
        404,
    ),
    "DELETE /api/v1/clients/{client_id}/refresh-schedule": (
        lambda api, v: api.delete(f"/api/v1/clients/{v.client_id}/refresh-schedule"),
        404,
    ),
    "GET /api/v1/dead-letters": (lambda api, v: api.get("/api/v1/dead-letters"), None),
    # The client administrator's Entra token is what names the tenant: a firm's token is refused.
    "POST /api/v1/client-invitations": (
        lambda api, v: api.post(
            "/api/v1/client-invitations",
            json={
                "accountant_email": INTRUDER,
                "accountant_name": "Zed",
                "environment": "Production",
                "companies": ["CRONUS"],
                "client_name": v.client_name,
            },
        ),
        401,
    ),
    # A change notice's URL is signed with the hub's key: one signed with a guessed key for the
    # victim's client is refused, handshake and notice alike, and asks for no refresh.
    "POST /webhooks/business-central/{key}": (
        lambda api, v: api.post(
            f"/webhooks/business-central/{_forged_notification_key(v)}", params={"validationToken": "t"}
        ),
        404,
    ),
    "GET /webhooks/business-central/{key}": (
        lambda api, v: api.get(
            f"/webhooks/business-central/{_forged_notification_key(v)}", params={"validationToken": "t"}
        ),
        404,
    ),
    # Pages (not in the OpenAPI document).
    "GET /": (lambda api, v: api.get("/"), None),
    "GET /clients": (lambda api, v: api.get("/clients"), None),
    "GET /clients/new": (lambda api, v: api.get("/clients/new"), None),
    "GET /clients/{client_id}": (lambda api, v: api.get(f"/clients/{v.client_id}"), 404),
    "GET /errors": (lambda api, v: api.get("/errors"), None),
    "GET /alerts": (lambda api, v: api.get("/alerts"), None),
    "GET /colleagues": (lambda api, v: api.get("/colleagues"), None),
    "GET /api-tokens": (lambda api, v: api.get("/api-tokens"), None),
    "GET /sign-in": (lambda api, v: api.get("/sign-in"), None),
    "POST /sign-in": (lambda api, v: api.post("/sign-in", data={"email": INTRUDER}), None),
    "GET /auth/sign-in": (lambda api, v: api.get("/auth/sign-in"), None),
    "GET /auth/callback": (lambda api, v: api.get("/auth/callback", params={"code": "x", "state": "y"}), None),
    "GET /sign-in/choose-firm": (lambda api, v: api.get("/sign-in/choose-firm"), None),
    "POST /sign-in/choose-firm": (lambda api, v: api.post("/sign-in/choose-firm", data={"choice": "own"}), None),
    "POST /sign-out": (lambda api, v: api.post("/sign-out"), None),
    "GET /invitations/accept": (lambda api, v: api.get("/invitations/accept", params={"link": "x"}), None),
    "POST /invitations/accept": (lambda api, v: api.post("/invitations/accept", data={"link": "x"}), None),
    "GET /dev/mail": (lambda api, v: api.get("/dev/mail"), None),
    # The API's page: Swagger UI on the OpenAPI document, nothing of any firm's in it.
    "GET /docs": (lambda api, v: api.get("/docs"), 200),
    # The scripts' messages: the same for every firm, nothing of any firm's in them.
    "GET /i18n/{language}.json": (lambda api, v: api.get("/i18n/de.json"), 200),
    "GET /connect/callback": (lambda api, v: api.get("/connect/callback"), None),
    # The client's own page: a firm's credentials are no sign-in there.
    "GET /client-access": (lambda api, v: api.get("/client-access"), None),
    "POST /client-access/sign-in": (lambda api, v: api.post("/client-access/sign-in"), None),
    "GET /client-access/callback": (lambda api, v: api.get("/client-access/callback"), 400),
    "POST /client-access/withdraw": (
        lambda api, v: api.post("/client-access/withdraw", data={"firm_id": str(uuid.uuid4())}),
        400,
    ),
    "POST /client-access/invitations/withdraw": (
        lambda api, v: api.post("/client-access/invitations/withdraw", data={"invitation_id": str(uuid.uuid4())}),
        400,
    ),
    # A Connect link is signed with the hub's key: one forged for the victim's client is refused.
    "GET /connect/{token}": (lambda api, v: api.get(f"/connect/{_forged_link(v)}"), 400),
    "POST /connect/{token}": (lambda api, v: api.post(f"/connect/{_forged_link(v)}"), 400),
}


def _forged_notification_key(victim: Victim) -> str:
    guessed = NotificationSigner.of_secret("a guessed secret key that is long enough for HS256")
    return guessed.key(CompanyAddress(uuid.uuid4(), uuid.UUID(victim.client_id), uuid.UUID(victim.company_id)))


def _forged_link(victim: Victim) -> str:
    claims = {
        "purpose": "connect-client",
        "firm": str(uuid.uuid4()),
        "firm_name": "Intruder",
        "client": victim.client_id,
        "client_name": victim.client_name,
        "tenant_id": str(uuid.uuid4()),
        "environment": "Production",
        "exp": int(time.time()) + 3600,
    }
    return jwt.encode(claims, "a guessed secret key that is long enough for HS256", algorithm="HS256")


def test_every_route_and_page_has_an_isolation_case() -> None:
    routes = gateway_routes(pages=True)
    assert routes - set(CASES) == set(), "give each new route a case in CASES"
    assert set(CASES) - routes == set(), "a case names a route that no longer exists"


@pytest.mark.parametrize("route", sorted(CASES))
def test_another_firm_gets_404_and_none_of_the_data(hub: Hub, victim: Victim, route: str) -> None:
    probe, expected = CASES[route]
    intruder = hub.client(INTRUDER)
    intruder.follow_redirects = False
    answer = probe(intruder, victim)
    if expected is not None:
        assert answer.status_code == expected, f"{route}: {answer.status_code} {answer.text[:300]}"
    else:
        assert answer.status_code < 500, f"{route}: {answer.status_code} {answer.text[:300]}"
    body = _workbook_text(answer)
    leaked = [marker for marker in victim.markers() if marker in body]
    assert leaked == [], f"{route} answered the other firm's {leaked}"


def test_the_victims_data_is_untouched(hub: Hub, victim: Victim) -> None:
    owner = hub.client(VICTIM)
    deadline = time.monotonic() + 15
    while not (schedules := owner.get("/api/v1/refresh-schedule").json())["clients"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert schedules["firm"] is None
    assert [(c["client_id"], c["schedule"]["every_minutes"]) for c in schedules["clients"]] == [(victim.client_id, 120)]
    assert [c["name"] for c in owner.get("/api/v1/clients").json()["clients"]] == [victim.client_name]
    assert [t["revoked_at"] for t in owner.get("/api/v1/tokens").json()] == [None]
    assert [v["view_id"] for v in owner.get("/api/v1/views").json()] == [victim.view_id]
    assert [r["rule_id"] for r in owner.get("/api/v1/alert-rules").json()["rules"]] == [victim.rule_id]
    assert [i["invitation_id"] for i in owner.get("/api/v1/accountants/invitations").json()] == [victim.invitation_id]
