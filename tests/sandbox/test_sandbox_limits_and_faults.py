"""BC's per-identity limits and the faults the admin API switches on."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from hub_sandbox.server import RunningSandbox
from hub_sandbox.tenants import TenantCatalogue, tenant_id_for
from tests.sandbox.sandbox_helpers import BC_SCOPE, msal_app

TokenSource = Callable[[str], str]
SAMPLE = tenant_id_for(0)
API = f"/v2.0/{SAMPLE}/Production/api/v2.0"
DEFAULT_LIMITS = {"max_concurrent": 5, "max_queued": 95, "window_requests": 6000, "window_seconds": 300}


@pytest.fixture(autouse=True)
def clean_slate(http: httpx.Client) -> Iterator[None]:
    http.delete("/_sandbox/faults")
    http.delete("/_sandbox/limits/counters")
    yield
    http.delete("/_sandbox/faults")
    http.put("/_sandbox/limits", json=DEFAULT_LIMITS)


@pytest.fixture
def bc(http: httpx.Client, acquire_token: TokenSource) -> Callable[..., httpx.Response]:
    headers = {"Authorization": f"Bearer {acquire_token(str(SAMPLE))}"}

    def get(path: str = "/companies", **kwargs: Any) -> httpx.Response:
        return http.get(f"{API}{path}", headers=headers, **kwargs)

    return get


def fault(http: httpx.Client, **spec: Any) -> None:
    response = http.put(f"/_sandbox/tenants/{SAMPLE}/faults", json=spec)
    assert response.status_code == 200, response.text


def sample_counters(http: httpx.Client) -> dict[str, Any]:
    tenants = http.get("/_sandbox/limits").json()["tenants"]
    return next(t for t in tenants if t["tenant_id"] == str(SAMPLE))


def test_concurrency_is_capped_and_the_queue_overflows_with_429(
    http: httpx.Client, bc: Callable[..., httpx.Response]
) -> None:
    http.put("/_sandbox/limits", json={"max_concurrent": 2, "max_queued": 2})
    fault(http, kind="latency", latency_ms=400)
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: bc(), range(8)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 4  # 2 processed + 2 queued
    assert statuses.count(429) == 4
    throttled = next(r for r in responses if r.status_code == 429)
    assert throttled.json()["error"]["code"] == "Application_TooManyRequests"
    assert int(throttled.headers["Retry-After"]) >= 1
    counters = sample_counters(http)
    assert counters["max_concurrency"] == 2
    assert counters["throttled"] == 4
    assert counters["requests_served"] == 4


def test_rate_window_counts_batch_operations(
    http: httpx.Client, acquire_token: TokenSource, bc: Callable[..., httpx.Response]
) -> None:
    http.put("/_sandbox/limits", json={"window_requests": 3, "window_seconds": 60})
    assert bc().status_code == 200
    batch = {"requests": [{"id": str(n), "method": "GET", "url": "companies"} for n in range(3)]}
    headers = {"Authorization": f"Bearer {acquire_token(str(SAMPLE))}"}
    answers = http.post(f"{API}/$batch", json=batch, headers=headers).json()["responses"]
    assert [a["status"] for a in answers] == [200, 200, 429]
    refused = bc()
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert sample_counters(http)["requests_served"] == 3


def test_latency_and_count_limited_invalid_credentials(http: httpx.Client, bc: Callable[..., httpx.Response]) -> None:
    fault(http, kind="latency", latency_ms=300, count=1)
    started = time.perf_counter()
    assert bc().status_code == 200
    assert time.perf_counter() - started >= 0.3
    fault(http, kind="invalid_credentials", count=2)
    listed = http.get(f"/_sandbox/tenants/{SAMPLE}/faults").json()
    assert [f["spec"]["kind"] for f in listed] == ["invalid_credentials"]
    for _ in range(2):
        refused = bc()
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "Authentication_InvalidCredentials"
    assert bc().status_code == 200  # recovered after two failures
    assert http.get("/_sandbox/faults").json() == []


def test_company_forbidden_for_one_company(
    http: httpx.Client, bc: Callable[..., httpx.Response], catalogue: TenantCatalogue
) -> None:
    tenant = catalogue.find(str(SAMPLE))
    assert tenant is not None
    blocked, other = tenant.environments[0].companies[:2]
    fault(http, kind="company_forbidden", company_id=str(blocked.id))
    refused = bc(f"/companies({blocked.id})/accounts")
    # Real BC's answer to a missing table permission: a 500 whose message alone says so.
    assert refused.status_code == 500
    assert refused.json()["error"]["code"] == "Internal_ServerError"
    assert refused.json()["error"]["message"].startswith("Sorry, the current permissions prevented the action.")
    assert "TableData 15 G/L Account Read" in refused.json()["error"]["message"]
    assert bc(f"/companies({other.id})/accounts").status_code == 200
    assert bc("/companies").status_code == 200


def test_messages_come_in_the_language_asked_for_else_the_tenants(
    http: httpx.Client, acquire_token: TokenSource, catalogue: TenantCatalogue
) -> None:
    tenant = catalogue.find(str(SAMPLE))
    assert tenant is not None and tenant.locale.language.startswith("en-")
    blocked = tenant.environments[0].companies[0]
    fault(http, kind="company_forbidden", company_id=str(blocked.id))

    bearer = {"Authorization": f"Bearer {acquire_token(str(SAMPLE))}"}

    def message(language: str | None = None) -> str:
        asked = {"Accept-Language": language} if language else {}
        answer = http.get(f"{API}/companies({blocked.id})/accounts", headers=bearer | asked)
        assert (answer.status_code, answer.json()["error"]["code"]) == (500, "Internal_ServerError")
        return str(answer.json()["error"]["message"])

    danish = message("da-DK,da;q=0.9,en;q=0.5")
    assert danish.startswith("Beklager, men de aktuelle tilladelser forhindrede handlingen. (TableData 15")
    assert message("de").startswith("Die Aktion wurde leider")
    assert message().startswith("Sorry, the current permissions")  # the sample tenant works in English
    # Inside a $batch, each operation's own header counts, else the batch's.
    operation = {"id": "a", "method": "GET", "url": f"companies({blocked.id})/accounts"}
    batch = http.post(
        f"{API}/$batch",
        headers=bearer | {"Accept-Language": "de-DE"},
        json={"requests": [operation, {**operation, "id": "b", "headers": {"Accept-Language": "en-US"}}]},
    )
    messages = {r["id"]: r["body"]["error"]["message"] for r in batch.json()["responses"]}
    assert messages["a"].startswith("Die Aktion wurde leider") and messages["b"].startswith("Sorry,")


def test_environment_removed_and_upgrading(http: httpx.Client, bc: Callable[..., httpx.Response]) -> None:
    fault(http, kind="environment_removed", environment="Production")
    removed = bc()
    assert removed.status_code == 404
    assert removed.json()["error"]["code"] == "NoEnvironment"
    http.delete(f"/_sandbox/tenants/{SAMPLE}/faults/environment_removed")
    fault(http, kind="upgrading", retry_after_seconds=120, count=1)
    upgrading = bc()
    assert upgrading.status_code == 503
    assert upgrading.headers["Retry-After"] == "120"
    assert bc().status_code == 200


def test_throttled_with_or_without_retry_after(http: httpx.Client, bc: Callable[..., httpx.Response]) -> None:
    """BC documents Retry-After on its 502 and 503, not on its 429: the fault gives both."""
    fault(http, kind="too_many_requests", retry_after_seconds=7, count=1)
    told = bc()
    assert (told.status_code, told.headers["Retry-After"]) == (429, "7")
    fault(http, kind="too_many_requests", send_retry_after=False, count=1)
    untold = bc()
    assert untold.status_code == 429 and "retry-after" not in untold.headers
    assert bc().status_code == 200


def test_timeout_hangs_then_504_or_until_the_client_leaves(
    http: httpx.Client, bc: Callable[..., httpx.Response]
) -> None:
    fault(http, kind="timeout", timeout_seconds=0.4, count=1)
    started = time.perf_counter()
    answer = bc()
    assert answer.status_code == 504
    assert time.perf_counter() - started >= 0.4
    fault(http, kind="timeout", timeout_seconds=30, count=1)
    with pytest.raises(httpx.ReadTimeout):
        bc(timeout=0.5)
    time.sleep(0.3)  # the server notices the hang-up and frees the slot
    assert sample_counters(http)["active"] == 0


def test_malformed_and_oversized_bodies(http: httpx.Client, bc: Callable[..., httpx.Response]) -> None:
    fault(http, kind="malformed_body", count=1)
    malformed = bc()
    assert malformed.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(malformed.content)
    fault(http, kind="oversized_body", size_mb=2, count=1)
    huge = bc()
    assert huge.status_code == 200
    assert len(huge.content) > 2 * 1024 * 1024
    assert len(json.loads(huge.content)["value"]) > 1000


def test_tenant_cue_services_and_faults_listed(http: httpx.Client) -> None:
    fault(http, kind="latency", latency_ms=5)
    tenants = http.get("/_sandbox/tenants").json()["tenants"]
    assert tenants[0]["bc_version"].startswith("29.")
    assert tenants[0]["cue_services_published"] is True
    assert tenants[0]["faults"][0]["spec"]["kind"] == "latency"


def test_consent_withdrawn_then_restored(sandbox_server: RunningSandbox, http: httpx.Client) -> None:
    fault(http, kind="consent_withdrawn", count=1)
    app = msal_app(sandbox_server, str(SAMPLE), http)
    refused = app.acquire_token_for_client(scopes=[BC_SCOPE])
    assert refused["error"] == "unauthorized_client"
    assert 700016 in refused["error_codes"]
    # A new app object: msal replays a recent error answer for the same request.
    again = msal_app(sandbox_server, str(SAMPLE), http).acquire_token_for_client(scopes=[BC_SCOPE])
    assert "access_token" in again


def test_trickle_sends_the_answer_a_byte_at_a_time(http: httpx.Client, acquire_token: TokenSource) -> None:
    headers = {"Authorization": f"Bearer {acquire_token(str(SAMPLE))}"}
    fault(http, kind="trickle", trickle_interval_seconds=0.2, count=1)
    with http.stream("GET", f"{API}/companies", headers=headers) as answer:
        assert answer.status_code == 200
        first_reads = []
        for chunk in answer.iter_raw():
            first_reads.append(chunk)
            if len(first_reads) == 3:
                break
    # Each read brings one byte: a per-read timeout never fires, only a total deadline would.
    assert first_reads == [b"{", b'"', b"@"]
    assert http.get(f"{API}/companies", headers=headers).json()["value"], "count=1: the next answer is whole"


def test_repeated_next_link_points_at_the_page_just_served(http: httpx.Client, acquire_token: TokenSource) -> None:
    headers = {"Authorization": f"Bearer {acquire_token(str(SAMPLE))}", "Prefer": "odata.maxpagesize=1"}
    fault(http, kind="repeated_next_link", count=2)
    first = http.get(f"{API}/companies", headers=headers).json()
    link = first["@odata.nextLink"]
    again = http.get(link, headers=headers).json()
    assert again["@odata.nextLink"] == link
    assert again["value"] == first["value"]


def test_duplicate_company_ids(http: httpx.Client, bc: Callable[..., httpx.Response]) -> None:
    healthy = [company["id"] for company in bc().json()["value"]]
    fault(http, kind="duplicate_company_ids", count=1)
    ids = [company["id"] for company in bc().json()["value"]]
    assert ids == [*healthy, healthy[0]]


def test_too_many_companies(http: httpx.Client, bc: Callable[..., httpx.Response]) -> None:
    healthy = [company["id"] for company in bc().json()["value"]]
    fault(http, kind="too_many_companies", count=1)
    page = bc().json()
    assert "@odata.nextLink" not in page
    ids = [company["id"] for company in page["value"]]
    assert len(ids) == len(set(ids)) == 1001 and ids[: len(healthy)] == healthy


def test_entra_answering_not_json(sandbox_server: RunningSandbox, http: httpx.Client) -> None:
    fault(http, kind="entra_not_json", count=1)
    app = msal_app(sandbox_server, str(SAMPLE), http)
    with pytest.raises(ValueError, match="Expecting value"):
        app.acquire_token_for_client(scopes=[BC_SCOPE])
    again = msal_app(sandbox_server, str(SAMPLE), http).acquire_token_for_client(scopes=[BC_SCOPE])
    assert "access_token" in again


def test_answers_are_gzipped_when_the_request_accepts_it(
    http: httpx.Client, acquire_token: TokenSource, catalogue: TenantCatalogue
) -> None:
    """As BC does: a client's inflating runs against the sandbox as against BC."""
    tenant = catalogue.find(str(SAMPLE))
    assert tenant is not None
    company = tenant.environments[0].companies[0]
    bearer = {"Authorization": f"Bearer {acquire_token(str(SAMPLE))}"}
    url = f"{API}/companies({company.id})/accounts"
    with http.stream("GET", url, headers=bearer | {"Accept-Encoding": "gzip"}) as compressed:
        raw = b"".join(compressed.iter_raw())
        assert compressed.headers["content-encoding"] == "gzip"
    accounts = json.loads(gzip.decompress(raw))["value"]
    assert accounts and len(raw) < len(json.dumps(accounts)) / 3
    with http.stream("GET", url, headers=bearer | {"Accept-Encoding": "gzip;q=0, identity"}) as plain:
        assert "content-encoding" not in plain.headers
        assert json.loads(b"".join(plain.iter_raw()))["value"] == accounts
