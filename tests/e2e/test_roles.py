"""The role matrix (README, "Roles"), route by route: staff read, refresh, test and download;
owners and admins also manage clients, their access, colleagues and dead letters.

Every API route has a row here; a route added without one fails the suite."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.conftest import Hub
from tests.support.routes import gateway_routes
from tests.support.sign_in import join_firm

pytestmark = pytest.mark.e2e

EVERYONE = "everyone"
MANAGERS = "owners and admins"
NO_ACCOUNT = "no account needed"

SOME_ID = "00000000-0000-0000-0000-0000000000aa"
CARD = {"name": "Roles", "client_url": "https://businesscentral.dynamics.com/contoso.com/Production"}

Call = Callable[[httpx.Client], httpx.Response]
MATRIX: dict[str, tuple[str, Call]] = {
    "GET /healthz": (NO_ACCOUNT, lambda api: api.get("/healthz")),
    "POST /api/v1/client-invitations": (NO_ACCOUNT, lambda api: api.post("/api/v1/client-invitations", json={})),
    # Business Central's change notices: the signed key in the path is the credential.
    "POST /webhooks/business-central/{key}": (
        NO_ACCOUNT,
        lambda api: api.post("/webhooks/business-central/not-a-key", params={"validationToken": "t"}),
    ),
    "GET /webhooks/business-central/{key}": (
        NO_ACCOUNT,
        lambda api: api.get("/webhooks/business-central/not-a-key", params={"validationToken": "t"}),
    ),
    "GET /api/v1/me": (EVERYONE, lambda api: api.get("/api/v1/me")),
    "GET /api/v1/accountants": (EVERYONE, lambda api: api.get("/api/v1/accountants")),
    "GET /api/v1/clients": (EVERYONE, lambda api: api.get("/api/v1/clients")),
    "GET /api/v1/dashboard": (EVERYONE, lambda api: api.get("/api/v1/dashboard")),
    "GET /api/v1/columns": (EVERYONE, lambda api: api.get("/api/v1/columns")),
    "GET /api/v1/preferences": (EVERYONE, lambda api: api.get("/api/v1/preferences")),
    "PUT /api/v1/preferences": (EVERYONE, lambda api: api.put("/api/v1/preferences", json={})),
    "GET /api/v1/views": (EVERYONE, lambda api: api.get("/api/v1/views")),
    "POST /api/v1/views": (
        EVERYONE,
        lambda api: api.post("/api/v1/views", json={"name": f"v{uuid.uuid4().hex[:6]}", "query": {}}),
    ),
    "DELETE /api/v1/views/{view_id}": (EVERYONE, lambda api: api.delete(f"/api/v1/views/{SOME_ID}")),
    "GET /api/v1/errors": (EVERYONE, lambda api: api.get("/api/v1/errors")),
    "GET /api/v1/problems": (EVERYONE, lambda api: api.get("/api/v1/problems")),
    "GET /api/v1/refresh-runs/{run_id}": (EVERYONE, lambda api: api.get("/api/v1/refresh-runs/run-1")),
    "GET /api/v1/refresh-schedule": (EVERYONE, lambda api: api.get("/api/v1/refresh-schedule")),
    "PUT /api/v1/refresh-schedule": (
        MANAGERS,
        lambda api: api.put("/api/v1/refresh-schedule", json={"every_minutes": None}),
    ),
    "PUT /api/v1/clients/{client_id}/refresh-schedule": (
        MANAGERS,
        lambda api: api.put(f"/api/v1/clients/{SOME_ID}/refresh-schedule", json={"every_minutes": 60}),
    ),
    "DELETE /api/v1/clients/{client_id}/refresh-schedule": (
        MANAGERS,
        lambda api: api.delete(f"/api/v1/clients/{SOME_ID}/refresh-schedule"),
    ),
    # Alert rules: everyone their own; owners and admins every rule of the firm (test_alerts.py).
    "GET /api/v1/alert-rules": (EVERYONE, lambda api: api.get("/api/v1/alert-rules")),
    "GET /api/v1/alerts": (EVERYONE, lambda api: api.get("/api/v1/alerts?status=all")),
    "GET /api/v1/alerts/markers": (EVERYONE, lambda api: api.get("/api/v1/alerts/markers")),
    "POST /api/v1/alert-rules": (
        EVERYONE,
        lambda api: api.post(
            "/api/v1/alert-rules", json={"name": "Low cash", "figure": "cash", "comparison": "below", "threshold": "1"}
        ),
    ),
    "PUT /api/v1/alert-rules/{rule_id}": (
        EVERYONE,
        lambda api: api.put(
            f"/api/v1/alert-rules/{SOME_ID}",
            json={"name": "Low cash", "figure": "cash", "comparison": "below", "threshold": "1"},
        ),
    ),
    "DELETE /api/v1/alert-rules/{rule_id}": (EVERYONE, lambda api: api.delete(f"/api/v1/alert-rules/{SOME_ID}")),
    "GET /api/v1/live": (EVERYONE, lambda api: api.get("/api/v1/live", headers={"accept": "text/plain"})),
    "GET /api/v1/clients/{client_id}/companies/{company_id}": (
        EVERYONE,
        lambda api: api.get(f"/api/v1/clients/{SOME_ID}/companies/{SOME_ID}"),
    ),
    "GET /api/v1/clients/{client_id}/companies/{company_id}/workbook": (
        EVERYONE,
        lambda api: api.get(f"/api/v1/clients/{SOME_ID}/companies/{SOME_ID}/workbook"),
    ),
    "GET /api/v1/key-figures/workbook": (EVERYONE, lambda api: api.get("/api/v1/key-figures/workbook")),
    "POST /api/v1/refresh": (EVERYONE, lambda api: api.post("/api/v1/refresh", json={"client_id": SOME_ID})),
    "POST /api/v1/connection-tests": (
        EVERYONE,
        lambda api: api.post("/api/v1/connection-tests", json={"client_url": "not a url"}),
    ),
    "GET /api/v1/connection-tests/{test_id}": (EVERYONE, lambda api: api.get(f"/api/v1/connection-tests/{SOME_ID}")),
    "GET /api/v1/tokens": (EVERYONE, lambda api: api.get("/api/v1/tokens")),
    "POST /api/v1/tokens": (EVERYONE, lambda api: api.post("/api/v1/tokens", json={"name": "mine"})),
    "DELETE /api/v1/tokens/{token_id}": (EVERYONE, lambda api: api.delete(f"/api/v1/tokens/{SOME_ID}")),
    "POST /api/v1/clients": (MANAGERS, lambda api: api.post("/api/v1/clients", json=CARD)),
    "PUT /api/v1/clients/{client_id}": (MANAGERS, lambda api: api.put(f"/api/v1/clients/{SOME_ID}", json=CARD)),
    "DELETE /api/v1/clients/{client_id}": (MANAGERS, lambda api: api.delete(f"/api/v1/clients/{SOME_ID}")),
    "POST /api/v1/clients/missing-time-zones": (
        MANAGERS,
        lambda api: api.post("/api/v1/clients/missing-time-zones", json={"time_zone": "Europe/Amsterdam"}),
    ),
    "POST /api/v1/clients/{client_id}/connect-link": (
        MANAGERS,
        lambda api: api.post(f"/api/v1/clients/{SOME_ID}/connect-link"),
    ),
    "DELETE /api/v1/clients/{client_id}/access": (
        MANAGERS,
        lambda api: api.delete(f"/api/v1/clients/{SOME_ID}/access"),
    ),
    "POST /api/v1/accountants/invitations": (
        MANAGERS,
        lambda api: api.post("/api/v1/accountants/invitations", json={"email": "new.person@roles-accounting.example"}),
    ),
    "DELETE /api/v1/accountants/{accountant_id}": (
        MANAGERS,
        lambda api: api.delete(f"/api/v1/accountants/{SOME_ID}"),
    ),
    "GET /api/v1/accountants/invitations": (MANAGERS, lambda api: api.get("/api/v1/accountants/invitations")),
    "DELETE /api/v1/accountants/invitations/{invitation_id}": (
        MANAGERS,
        lambda api: api.delete(f"/api/v1/accountants/invitations/{SOME_ID}"),
    ),
    "GET /api/v1/dead-letters": (MANAGERS, lambda api: api.get("/api/v1/dead-letters")),
}


def test_every_api_route_has_a_row_in_the_matrix() -> None:
    assert gateway_routes(pages=False) == set(MATRIX)


@pytest.fixture(scope="module")
def firm(hub: Hub) -> dict[str, httpx.Client]:
    owner = hub.client("opal@roles-accounting.example")
    firm_id = owner.get("/api/v1/me").json()["firm_id"]
    for email, role in (("adam@roles-accounting.example", "admin"), ("stan@roles-accounting.example", "staff")):
        assert owner.post("/api/v1/accountants/invitations", json={"email": email, "role": role}).status_code == 202
        join_firm(hub.url, email, firm_id)
    admin, staff = hub.client("adam@roles-accounting.example"), hub.client("stan@roles-accounting.example")
    assert admin.get("/api/v1/me").json()["role"] == "admin"
    assert staff.get("/api/v1/me").json()["role"] == "staff"
    return {"owner": owner, "admin": admin, "staff": staff}


@pytest.mark.parametrize("route", sorted(MATRIX))
@pytest.mark.parametrize("role", ["owner", "admin", "staff"])
def test_each_role_gets_what_the_matrix_says(firm: dict[str, httpx.Client], route: str, role: str) -> None:
    who, call = MATRIX[route]
    api = firm[role]
    if route == "GET /api/v1/live":
        with api.stream("GET", "/api/v1/live") as stream:
            status = stream.status_code
    else:
        status = call(api).status_code
    if who == MANAGERS and role == "staff":
        assert status == 403, f"{role} {route}: {status}"
    else:
        assert status != 403, f"{role} {route}: {status}"
        assert status < 500, f"{role} {route}: {status}"
