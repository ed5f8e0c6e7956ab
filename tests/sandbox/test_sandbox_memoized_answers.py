"""HUB_SANDBOX_MEMOIZE_ANSWERS (benchmarks): the same answers, the same limits and faults."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hub_sandbox.server import RunningSandbox, serve_in_background
from hub_sandbox.tenants import tenant_id_for
from tests.sandbox.sandbox_helpers import BC_SCOPE, msal_app, sandbox_settings

SAMPLE = tenant_id_for(0)
API = f"/v2.0/{SAMPLE}/Production/api/v2.0"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningSandbox, RunningSandbox]]:
    state: Path = tmp_path_factory.mktemp("memoized-state")
    # The same state dir: both sign tokens with the same key and build the same data.
    with (
        serve_in_background(sandbox_settings(state, sandbox_memoize_answers=True)) as memoized,
        serve_in_background(sandbox_settings(state)) as computed,
    ):
        yield memoized, computed


def _client(server: RunningSandbox) -> httpx.Client:
    http = httpx.Client(base_url=server.base_url, verify=server.ssl_context(), timeout=10)
    token = msal_app(server, str(SAMPLE), http).acquire_token_for_client(scopes=[BC_SCOPE])["access_token"]
    http.headers["Authorization"] = f"Bearer {token}"
    return http


def _counters(http: httpx.Client) -> dict[str, int]:
    tenants = http.get("/_sandbox/limits").json()["tenants"]
    counted: dict[str, int] = next(t for t in tenants if t["tenant_id"] == str(SAMPLE))
    return counted


def test_memoized_answers_equal_computed_ones_and_still_count(
    servers: tuple[RunningSandbox, RunningSandbox],
) -> None:
    memoized, computed = (_client(server) for server in servers)
    company = computed.get(f"{API}/companies").json()["value"][0]["id"]
    path = f"{API}/companies({company})/salesInvoices?$filter=status eq 'Open'&$select=number,remainingAmount"
    expected = computed.get(path).json()["value"]
    first, second = memoized.get(path).json(), memoized.get(path).json()
    assert [{k: v for k, v in r.items() if k != "@odata.etag"} for r in first["value"]] == [
        {k: v for k, v in r.items() if k != "@odata.etag"} for r in expected
    ]
    assert second == first
    assert _counters(memoized)["requests_served"] >= 2, "every request still counts toward BC's limits"


def test_faults_still_apply_to_memoized_answers(servers: tuple[RunningSandbox, RunningSandbox]) -> None:
    memoized, _ = (_client(server) for server in servers)
    assert memoized.get(f"{API}/companies").status_code == 200
    memoized.put(f"/_sandbox/tenants/{SAMPLE}/faults", json={"kind": "environment_removed", "count": 1})
    assert memoized.get(f"{API}/companies").status_code == 404
    memoized.put(f"/_sandbox/tenants/{SAMPLE}/faults", json={"kind": "duplicate_company_ids", "count": 1})
    listed = [c["id"] for c in memoized.get(f"{API}/companies").json()["value"]]
    assert len(listed) == len(set(listed)) + 1
    assert memoized.get(f"{API}/companies").status_code == 200


def test_changes_to_the_books_are_not_hidden_by_memoized_answers(
    servers: tuple[RunningSandbox, RunningSandbox],
) -> None:
    memoized, _ = (_client(server) for server in servers)
    company = memoized.get(f"{API}/companies").json()["value"][0]["id"]
    path = f"{API}/companies({company})/salesInvoices?$filter=status eq 'Open'&$select=number"
    before = len(memoized.get(path).json()["value"])
    customer = memoized.get(f"{API}/companies({company})/customers?$filter=blocked eq ' '").json()["value"][0]
    memoized.post(
        f"/_sandbox/companies/{company}/sales-invoices",
        json={"customer_number": customer["number"], "amount_including_tax": "10.00", "due_date": "2026-06-01"},
    ).raise_for_status()
    try:
        assert len(memoized.get(path).json()["value"]) == before + 1
    finally:
        memoized.delete("/_sandbox/book-changes").raise_for_status()
    assert len(memoized.get(path).json()["value"]) == before
