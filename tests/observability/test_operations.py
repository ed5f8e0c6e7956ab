"""Metrics and traces read from the real processes: a refresh moves the fetcher's counters
and is one trace from the gateway's request to its projection; BC's 429 is counted; the
live-stream gauge follows an open page; /readyz fails while NATS is away; and the Grafana
dashboard asks only for metrics the services expose."""

from __future__ import annotations

import http.client
import json
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.observability.conftest import SERVICES, Metrics, ObservedHub, firm_email
from tests.support.connect import add_connected_client
from tests.support.otlp import ReceivedSpan
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "accountant-hub.json"


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(scope="module")
def firm(observed_hub: ObservedHub, tenant: dict[str, str]) -> dict[str, Any]:
    """A firm whose one client (the tenant) was read once: every company shows figures."""
    api = observed_hub.client(firm_email("refresh"))
    client_id = add_connected_client(
        observed_hub.sandbox, api, {"name": tenant["domain"], "client_url": tenant["client_url"]}
    )

    def all_read() -> list[dict[str, Any]] | None:
        rows: list[dict[str, Any]] = api.get("/api/v1/dashboard", params={"client_id": client_id}).json()["rows"]
        return rows if rows and all(row["state"] == "ok" for row in rows) else None

    rows = eventually(all_read, "the client's first reading", timeout=60)
    return {"api": api, "client_id": client_id, "companies": len(rows)}


def _refresh(firm: dict[str, Any]) -> None:
    response = firm["api"].post("/api/v1/refresh", json={"client_id": firm["client_id"]})
    assert response.status_code == 202, response.text


def _once_read_ok(observed_hub: ObservedHub, before: Metrics) -> Metrics:
    """The fetcher's metrics once it has counted one more refresh as ok than ``before``."""

    def counted() -> Metrics | None:
        scrape = observed_hub.metrics("fetcher")
        ok = scrape.value("hub_refreshes_total", outcome="ok")
        return scrape if ok > before.value("hub_refreshes_total", outcome="ok") else None

    return eventually(counted, "the fetcher to count a refresh as ok", timeout=30)


def test_every_service_is_live_and_ready(observed_hub: ObservedHub) -> None:
    for service in SERVICES:
        assert observed_hub.operations(service, "/livez").status_code == 200
        ready = observed_hub.operations(service, "/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}, (service, ready.text)
    # The gateway's public port shows no metrics: they live on the operations port only.
    assert httpx.get(f"{observed_hub.url}/metrics").status_code == 404


def test_a_refresh_is_counted_timed_and_traced_end_to_end(observed_hub: ObservedHub, firm: dict[str, Any]) -> None:
    before = observed_hub.metrics("fetcher")
    projected_before = observed_hub.metrics("gateway").value("hub_projection_lag_seconds_count", stream="HUB_SNAPSHOTS")
    _refresh(firm)

    after = _once_read_ok(observed_hub, before)
    assert (
        after.value("hub_refresh_duration_seconds_count", outcome="ok")
        == before.value("hub_refresh_duration_seconds_count", outcome="ok") + 1
    )
    assert after.value("hub_refresh_duration_seconds_sum", outcome="ok") > before.value(
        "hub_refresh_duration_seconds_sum", outcome="ok"
    )
    assert after.value("hub_bc_responses_total", status_class="2xx") > before.value(
        "hub_bc_responses_total", status_class="2xx"
    )
    # Every company's snapshot reached the read model, and its lag was measured.
    eventually(
        lambda: (
            observed_hub.metrics("gateway").value("hub_projection_lag_seconds_count", stream="HUB_SNAPSHOTS")
            >= projected_before + firm["companies"]
        ),
        "the gateway to project the snapshots",
        timeout=30,
    )

    # One trace: the request, the registry's command and relay, the fetcher's refresh and
    # its calls to BC, and the gateway projecting the snapshot.
    def whole_trace() -> list[ReceivedSpan] | None:
        requests = [
            span
            for span in observed_hub.receiver.spans()
            if span.service == "gateway" and span.name == "POST /api/v1/refresh"
        ]
        for request in requests:
            spans = observed_hub.receiver.trace(request.trace_id)
            names = {(span.service, span.name) for span in spans}
            if ("gateway", "project CompanySnapshot") in names and ("fetcher", "refresh") in names:
                return spans
        return None

    spans = eventually(whole_trace, "one trace from the request to the projection", timeout=30)
    names = {(span.service, span.name) for span in spans}
    assert {
        ("gateway", "POST /api/v1/refresh"),
        ("registry", "publish RefreshRequested"),
        ("fetcher", "handle RefreshRequested"),
        ("fetcher", "refresh"),
        ("fetcher", "BC GET"),
        ("gateway", "project CompanySnapshot"),
    } <= names, sorted(names)
    assert any(service == "registry" and "cmd.registry.refresh.request" in name for service, name in names), names
    # Each span hangs from another of the same trace, except the request's own.
    ids = {span.span_id for span in spans}
    orphans = [span for span in spans if span.parent_span_id and span.parent_span_id not in ids]
    assert not orphans, orphans
    # Span names carry no firm, client or company id (one name per kind of work, not per firm).
    named_by_id = [(span.service, span.name) for span in observed_hub.receiver.spans() if UUID.search(span.name)]
    assert not named_by_id, named_by_id


def test_a_429_from_business_central_is_counted(
    observed_hub: ObservedHub, firm: dict[str, Any], tenant: dict[str, str]
) -> None:
    before = observed_hub.metrics("fetcher")
    with observed_hub.sandbox_admin() as admin:
        admin.put(
            f"/tenants/{tenant['id']}/faults",
            json={"kind": "too_many_requests", "count": 1, "retry_after_seconds": 1},
        ).raise_for_status()
    try:
        _refresh(firm)
        # The throttled refresh is put off, then read on its next delivery.
        after = _once_read_ok(observed_hub, before)
    finally:
        with observed_hub.sandbox_admin() as admin:
            admin.delete(f"/tenants/{tenant['id']}/faults").raise_for_status()
    assert (
        after.value("hub_bc_throttled_total", status="429") == before.value("hub_bc_throttled_total", status="429") + 1
    )
    assert after.value("hub_bc_responses_total", status_class="4xx") > before.value(
        "hub_bc_responses_total", status_class="4xx"
    )
    assert (
        after.value("hub_refreshes_total", outcome="deferred")
        == before.value("hub_refreshes_total", outcome="deferred") + 1
    )
    assert after.value("hub_bc_throttled_total", status="503") == before.value("hub_bc_throttled_total", status="503")


def test_the_live_stream_gauge_follows_an_open_page(observed_hub: ObservedHub, firm: dict[str, Any]) -> None:
    def open_streams() -> float:
        return observed_hub.metrics("gateway").value("hub_live_streams_open")

    assert open_streams() == 0
    # A page's stream, as a browser holds it: open until the connection closes.
    page = http.client.HTTPConnection("127.0.0.1", urlsplit(observed_hub.url).port, timeout=20)
    try:
        page.request("GET", "/api/v1/live", headers={"Authorization": firm["api"].headers["Authorization"]})
        stream = page.getresponse()
        assert stream.status == 200
        while not stream.readline().startswith(b"event: ready"):
            pass
        assert open_streams() == 1
    finally:
        page.close()
    eventually(lambda: open_streams() == 0, "the gateway to count the stream closed", timeout=20)


def test_the_company_figures_age_is_sampled(observed_hub: ObservedHub, firm: dict[str, Any]) -> None:
    def sampled() -> float:
        return observed_hub.metrics("gateway").value("hub_company_figures_age_seconds_bucket", le="+Inf")

    companies = eventually(lambda: sampled() or None, "a staleness sample with the firm's companies", timeout=10)
    assert companies >= firm["companies"]
    gateway = observed_hub.metrics("gateway")
    # Just read: every company's figures are at most an hour old, and the oldest says so too.
    assert gateway.value("hub_company_figures_age_seconds_bucket", le="3600") == companies
    assert 0 <= gateway.value("hub_company_figures_oldest_age_seconds") < 3600


def test_outbox_backlog_and_consumer_lag_are_sampled(observed_hub: ObservedHub, firm: dict[str, Any]) -> None:
    registry = observed_hub.metrics("registry")
    assert "hub_outbox_backlog_events" in registry.names()
    assert registry.value("hub_outbox_backlog_events", outbox="registry_outbox") == 0
    # The only replica of each holds its lease: it relays the outbox.
    assert registry.value("hub_lease_held", role="registry") == 1
    assert observed_hub.metrics("invitations").value("hub_lease_held", role="invitations") == 1
    assert "hub_consumer_lag_messages" in observed_hub.metrics("fetcher").names()
    gateway = observed_hub.metrics("gateway")
    assert {
        s.labels["consumer"] for f in gateway.families for s in f.samples if f.name == "hub_consumer_lag_messages"
    } == {
        "gateway-events",
        "gateway-snapshots",
    }


def test_the_dashboard_asks_only_for_exposed_metrics(observed_hub: ObservedHub, firm: dict[str, Any]) -> None:
    exposed: set[str] = set()
    for service in SERVICES:
        exposed |= observed_hub.metrics(service).names()
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", []) if "expr" in target
    ]
    assert expressions, "the dashboard has no queries"
    used = {name for expr in expressions for name in re.findall(r"\bhub_[a-z0-9_]+", expr)}
    assert used, "the dashboard's queries name no hub metric"
    assert used <= exposed, sorted(used - exposed)


def test_readiness_fails_while_nats_is_away(observed_hub: ObservedHub) -> None:
    def readiness(service: str, status_code: int) -> httpx.Response | None:
        answer = observed_hub.operations(service, "/readyz")
        return answer if answer.status_code == status_code else None

    observed_hub.broker.stop()
    try:
        for service in SERVICES:
            answer = eventually(lambda: readiness(service, 503), f"{service} to report not ready", timeout=15)  # noqa: B023
            assert answer.json() == {"status": "not ready", "failing": ["nats"]}, (service, answer.text)
            assert observed_hub.operations(service, "/livez").status_code == 200
    finally:
        observed_hub.broker.start()
    for service in SERVICES:
        eventually(lambda: readiness(service, 200), f"{service} to be ready again", timeout=30)  # noqa: B023


def test_no_link_code_token_or_key_in_a_url_reaches_the_traces(observed_hub: ObservedHub) -> None:
    """Invitation links, Entra's codes, Connect tokens and webhook keys travel in URLs; a
    request's span keeps its route's template and no query (hub_gateway.request_tracing)."""
    secrets = {name: f"{name}{uuid.uuid4().hex}" for name in ("link", "code", "token", "key", "next")}
    api = observed_hub.client(firm_email("tracing"))
    anonymous = httpx.Client(base_url=observed_hub.url, timeout=20, follow_redirects=False)
    api.get("/invitations/accept", params={"link": secrets["link"]})
    anonymous.get("/sign-in", params={"next": f"/invitations/accept?link={secrets['next']}"})
    anonymous.get("/auth/callback", params={"code": secrets["code"], "state": secrets["code"]})
    anonymous.get(f"/connect/{secrets['token']}")
    anonymous.post(f"/webhooks/business-central/{secrets['key']}", params={"validationToken": secrets["key"]})
    anonymous.get(f"/no/such/page/{secrets['token']}")

    expected = {
        "GET /invitations/accept",
        "GET /sign-in",
        "GET /auth/callback",
        "GET /connect/{token}",
        "POST /webhooks/business-central/{key}",
    }

    def traced() -> list[ReceivedSpan] | None:
        spans = [span for span in observed_hub.receiver.spans() if span.service == "gateway"]
        return spans if expected <= {span.name for span in spans} else None

    spans = eventually(traced, "the requests' spans", timeout=30)
    leaked = [
        (span.name, key, value)
        for span in observed_hub.receiver.spans()
        for key, value in span.attributes.items()
        if any(secret in value or secret in span.name for secret in secrets.values())
    ]
    assert not leaked, leaked
    connect = next(span for span in spans if span.name == "GET /connect/{token}")
    assert "/connect/{token}" in connect.attributes["http.target"], connect.attributes
