"""Invariant 4: every route that takes an id answers 404 for another firm's ids, and an
accountant of one firm can never see, change, refresh or test another firm's client."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import Sandbox
from tests.e2e.conftest import Hub

pytestmark = pytest.mark.e2e

CARD = {"name": "Changed", "client_url": "https://businesscentral.dynamics.com/contoso.com/Production"}


@pytest.fixture(scope="module")
def victim(hub: Hub, sandbox: Sandbox) -> dict[str, Any]:
    """A firm with a client, a company, a connection test and an API token."""
    owner = hub.client("yara@victim-accounting.example")
    url = f"{sandbox.web_client}/cronus-sample.onmicrosoft.com/Production"
    client_id = owner.post("/api/v1/clients", json={"name": "Victim client", "client_url": url}).json()["client_id"]
    deadline = time.monotonic() + 40
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not any(r["company_id"] for r in rows):
        rows = owner.get("/api/v1/dashboard").json()["rows"]
        time.sleep(0.3)
    test_id = owner.post("/api/v1/connection-tests", json={"client_url": url}, timeout=40).json()["test_id"]
    token_id = owner.post("/api/v1/tokens", json={"name": "victim"}).json()["id"]
    return {
        "client_id": client_id,
        "company_id": next(r["company_id"] for r in rows if r["company_id"]),
        "test_id": test_id,
        "token_id": token_id,
    }


ROUTES: dict[str, Callable[[httpx.Client, dict[str, Any]], httpx.Response]] = {
    "PUT client": lambda api, v: api.put(f"/api/v1/clients/{v['client_id']}", json=CARD),
    "DELETE client": lambda api, v: api.delete(f"/api/v1/clients/{v['client_id']}"),
    "refresh client": lambda api, v: api.post("/api/v1/refresh", json={"client_id": v["client_id"]}),
    "refresh company": lambda api, v: api.post(
        "/api/v1/refresh", json={"client_id": v["client_id"], "company_id": v["company_id"]}
    ),
    "test a saved client": lambda api, v: api.post(
        "/api/v1/connection-tests", json={"client_url": CARD["client_url"], "client_id": v["client_id"]}
    ),
    "GET connection test": lambda api, v: api.get(f"/api/v1/connection-tests/{v['test_id']}"),
    "DELETE token": lambda api, v: api.delete(f"/api/v1/tokens/{v['token_id']}"),
}


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_another_firms_ids_answer_404(hub: Hub, victim: dict[str, Any], route: str) -> None:
    intruder = hub.client("zed@intruder-accounting.example")
    answer = ROUTES[route](intruder, victim)
    assert answer.status_code == 404, answer.text


def test_the_victims_data_is_untouched_and_invisible(hub: Hub, victim: dict[str, Any]) -> None:
    intruder = hub.client("zed@intruder-accounting.example")
    assert intruder.get("/api/v1/dashboard").json()["rows"] == []
    assert intruder.get("/api/v1/clients").json()["clients"] == []
    assert all(t["id"] != victim["token_id"] for t in intruder.get("/api/v1/tokens").json())
    owner = hub.client("yara@victim-accounting.example")
    assert [c["name"] for c in owner.get("/api/v1/clients").json()["clients"]] == ["Victim client"]
    assert owner.get("/api/v1/tokens").json()[0]["revoked_at"] is None
