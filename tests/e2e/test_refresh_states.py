"""Refresh state per company through the real hub: refreshing one company (or a selection)
leaves the other rows alone and its progress ends when each requested row has its outcome,
a client whose discovery fails completes too, and a refresh waiting to retry
(RefreshDeferred on the real broker) shows on the row and in Check Errors at once, until
the company's next snapshot replaces it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from hub_common.events import Actor, Failure, FailureKind, RefreshDeferred
from tests.conftest import Sandbox
from tests.e2e.conftest import Hub
from tests.support.connect import add_connected_client
from tests.support.events import publish, refreshes_settled
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

EMAIL = "peggy@adventure-accounting.example"


def _rows(api: httpx.Client, client_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = api.get("/api/v1/dashboard", params={"client_id": client_id}).json()["rows"]
    return rows


def _progress(api: httpx.Client, run_id: str) -> dict[str, Any]:
    progress: dict[str, Any] = api.get(f"/api/v1/refresh-runs/{run_id}").json()
    return progress


def _finished(api: httpx.Client, run_id: str) -> dict[str, Any] | None:
    progress = _progress(api, run_id)
    return progress if progress["total"] and progress["done"] == progress["total"] else None


def _row(api: httpx.Client, client_id: str, company_id: str) -> dict[str, Any]:
    return next(row for row in _rows(api, client_id) if row["company_id"] == company_id)


@pytest.fixture(scope="module")
def firm(hub: Hub, sandbox: Sandbox, nats_url: str) -> Iterator[dict[str, Any]]:
    """A firm with the CRONUS sample tenant as its client, every company read and no refresh
    of it still under way (so the tests see only what their own refreshes change)."""
    api = hub.client(EMAIL)
    url = f"{sandbox.web_client}/cronus-sample.onmicrosoft.com/Production"
    client_id = add_connected_client(sandbox, api, {"name": "CRONUS", "client_url": url})

    def read() -> list[dict[str, Any]] | None:
        rows = _rows(api, client_id)
        return rows if len(rows) >= 2 and all(r["state"] == "ok" for r in rows) else None

    rows = eventually(read, "the client's companies")
    firm_id = uuid.UUID(api.get("/api/v1/me").json()["firm_id"])
    companies = {uuid.UUID(client_id): frozenset(uuid.UUID(row["company_id"]) for row in rows)}
    eventually(lambda: refreshes_settled(nats_url, firm_id, companies), "the client's first refreshes to end")
    yield {"api": api, "client_id": client_id, "firm_id": firm_id}
    api.close()


def _refresh_watching_the_others(api: httpx.Client, client_id: str, chosen: list[str]) -> list[dict[str, Any]]:
    """Refresh the chosen companies (as Refresh selected does: one request per row) and watch
    every row until each run has finished; answers each run's final progress."""
    before = {row["company_id"]: row for row in _rows(api, client_id)}
    runs = [
        api.post("/api/v1/refresh", json={"client_id": client_id, "company_id": company_id}).raise_for_status().json()
        for company_id in chosen
    ]
    deadline = time.monotonic() + 90
    while True:
        for row in _rows(api, client_id):
            if row["company_id"] not in chosen:
                assert row["state"] == "ok", f"{row['company_name']} was not refreshed but shows {row['state']}"
                assert row["as_of"] == before[row["company_id"]]["as_of"]
        progress = [_progress(api, run["run_id"]) for run in runs]
        if all(p["refreshes"] == 1 and p["total"] and p["done"] == p["total"] for p in progress):
            break
        assert time.monotonic() < deadline, f"the refreshes never finished: {progress}"
        time.sleep(0.1)
    after = {row["company_id"]: row for row in _rows(api, client_id)}
    for company_id in chosen:
        assert after[company_id]["state"] == "ok"
        assert after[company_id]["as_of"] != before[company_id]["as_of"], "the chosen company was not read again"
    return progress


def test_refreshing_one_company_changes_only_its_row(firm: dict[str, Any]) -> None:
    api: httpx.Client = firm["api"]
    first = _rows(api, firm["client_id"])[0]["company_id"]
    [progress] = _refresh_watching_the_others(api, firm["client_id"], [first])
    assert progress == {"refreshes": 1, "total": 1, "done": 1, "failed": 0}


def test_refresh_selected_counts_exactly_the_selected_rows(firm: dict[str, Any]) -> None:
    api: httpx.Client = firm["api"]
    rows = _rows(api, firm["client_id"])
    chosen = [row["company_id"] for row in rows[-2:]]
    progress = _refresh_watching_the_others(api, firm["client_id"], chosen)
    assert [p["total"] for p in progress] == [1, 1] and [p["done"] for p in progress] == [1, 1]


def test_a_refresh_whose_discovery_fails_completes(hub: Hub, sandbox: Sandbox, faults: httpx.Client) -> None:
    api = hub.client("rupert@adventure-accounting.example")
    tenants: list[dict[str, Any]] = faults.get("/tenants").json()["tenants"]
    tenant = next(t for t in tenants if t["consented"] and t["domain"] != "cronus-sample.onmicrosoft.com")
    production = next(e for e in tenant["environments"] if e["name"] == "Production")
    card = {"name": tenant["display_name"], "client_url": production["client_url"]}
    client_id = add_connected_client(sandbox, api, card)
    # Every company read first: a company's row may come from its snapshot before the
    # discovery that lists them all is projected (two streams), so one row is not all.
    companies = len(production["companies"])
    eventually(
        lambda: len([r for r in _rows(api, client_id) if r["state"] == "ok"]) == companies, "the client's companies"
    )
    faults.put(f"/tenants/{tenant['id']}/faults", json={"kind": "invalid_credentials"}).raise_for_status()
    run_id = api.post("/api/v1/refresh", json={}).raise_for_status().json()["run_id"]
    progress = eventually(lambda: _finished(api, run_id), "the failed refresh to complete")
    assert progress == {"refreshes": 1, "total": companies, "done": companies, "failed": companies}
    assert all(row["state"] == "failed" for row in _rows(api, client_id))


def test_a_wait_for_a_retry_shows_at_once_until_the_next_snapshot(
    hub: Hub, nats_url: str, firm: dict[str, Any]
) -> None:
    api: httpx.Client = firm["api"]
    row = _rows(api, firm["client_id"])[0]
    occurred_at = datetime.now(UTC)
    next_attempt_at = (occurred_at + timedelta(minutes=35)).replace(microsecond=0)
    deferred = RefreshDeferred(
        refresh_id=uuid.uuid4(),
        client_id=uuid.UUID(firm["client_id"]),
        company_id=uuid.UUID(row["company_id"]),
        company_name=row["company_name"],
        failure=Failure(
            kind=FailureKind.ENVIRONMENT_OFFLINE,
            summary="The client's Business Central is being updated.",
            fix="Nothing to do: the hub tries again when the update is done.",
            http_status=503,
            bc_error_code="Upgrading",
            message="The environment is being upgraded.",
            correlation_id="corr-503",
            occurred_at=occurred_at,
        ),
        attempt=3,
        next_attempt_at=next_attempt_at,
    )
    publish(nats_url, deferred, firm_id=firm["firm_id"], actor=Actor.service("fetcher"))

    def shown_as(state: str) -> dict[str, Any] | None:
        shown = _row(api, firm["client_id"], row["company_id"])
        return shown if shown["state"] == state else None

    shown = eventually(lambda: shown_as("waiting"), "the row to wait for its retry", timeout=20)
    assert datetime.fromisoformat(shown["next_attempt_at"]) == next_attempt_at
    assert shown["failure"]["summary"] == "The client's Business Central is being updated."
    others = [r for r in _rows(api, firm["client_id"]) if r["company_id"] != row["company_id"]]
    assert all(r["state"] == "ok" for r in others)
    [entry] = [e for e in api.get("/api/v1/errors").json()["failures"] if e["next_attempt_at"]]
    assert (entry["company_id"], entry["attempt"]) == (row["company_id"], 3)
    assert datetime.fromisoformat(entry["next_attempt_at"]) == next_attempt_at
    assert entry["failure"]["http_status"] == 503 and entry["failure"]["correlation_id"] == "corr-503"
    details = api.get(f"/api/v1/clients/{firm['client_id']}/companies/{row['company_id']}").json()
    assert details["state"] == "waiting" and details["next_attempt_at"] == shown["next_attempt_at"]

    # The company's next reading replaces the wait, on the row and in Check Errors.
    api.post("/api/v1/refresh", json={"client_id": firm["client_id"], "company_id": row["company_id"]})
    eventually(lambda: shown_as("ok"), "the next snapshot")
    assert [e for e in api.get("/api/v1/errors").json()["failures"] if e["next_attempt_at"]] == []


def test_a_refresh_asked_for_again_while_it_waits_is_not_queued_again(
    hub: Hub, sandbox: Sandbox, faults: httpx.Client
) -> None:
    """A slow Business Central: asking again (the button, refresh all, a script in a loop)
    while the first refresh waits answers with it instead of queueing another request in
    the fetchers' queue every firm shares; once it is through, asking starts a new one."""
    api = hub.client("quinn@adventure-accounting.example")
    tenants: list[dict[str, Any]] = faults.get("/tenants").json()["tenants"]
    tenant = [t for t in tenants if t["consented"] and t["domain"] != "cronus-sample.onmicrosoft.com"][-1]
    production = next(e for e in tenant["environments"] if e["name"] == "Production")
    client_id = add_connected_client(
        sandbox, api, {"name": tenant["display_name"], "client_url": production["client_url"]}
    )
    companies = len(production["companies"])
    eventually(
        lambda: len([r for r in _rows(api, client_id) if r["state"] == "ok"]) == companies, "the client's companies"
    )
    faults.put(f"/tenants/{tenant['id']}/faults", json={"kind": "latency", "latency_ms": 3000}).raise_for_status()
    first = api.post("/api/v1/refresh", json={"client_id": client_id}).raise_for_status().json()
    assert len(first["refresh_ids"]) == 1 and first["on_their_way"] == []
    for body in (
        {},
        {"client_id": client_id},
        {"client_id": client_id, "company_id": _rows(api, client_id)[0]["company_id"]},
    ):
        again = api.post("/api/v1/refresh", json=body)
        assert again.status_code == 202, again.text
        assert again.json()["refresh_ids"] == [] and again.json()["on_their_way"] == first["refresh_ids"], body
        assert again.json()["not_started"] == 0, body
    faults.delete(f"/tenants/{tenant['id']}/faults").raise_for_status()
    eventually(lambda: _finished(api, first["run_id"]), "the first refresh to finish", timeout=60)
    later = api.post("/api/v1/refresh", json={"client_id": client_id}).raise_for_status().json()
    assert len(later["refresh_ids"]) == 1 and later["refresh_ids"] != first["refresh_ids"]
