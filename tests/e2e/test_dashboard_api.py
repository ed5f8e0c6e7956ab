"""The dashboard's JSON API through the real hub: query parameters and their errors, saved
preferences and views, the details pane, Check Errors, refresh progress and the live stream."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub_common.local_nats import free_port
from tests.conftest import Sandbox
from tests.e2e.conftest import Hub
from tests.support.connect import add_connected_client
from tests.support.processes import start_service
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

EMAIL = "ivan@fourthcoffee-accounting.example"


@pytest.fixture(scope="module")
def firm(hub: Hub, sandbox: Sandbox) -> Iterator[dict[str, Any]]:
    """A firm with the CRONUS sample tenant as its client, every company read."""
    api = hub.client(EMAIL)
    url = f"{sandbox.web_client}/cronus-sample.onmicrosoft.com/Production"
    client_id = add_connected_client(sandbox, api, {"name": "CRONUS", "client_url": url})

    def read() -> list[dict[str, Any]] | None:
        rows: list[dict[str, Any]] = api.get("/api/v1/dashboard").json()["rows"]
        ok = [r for r in rows if r["client_id"] == client_id and r["state"] == "ok"]
        return ok if len(ok) >= 2 else None

    rows = eventually(read, "the client's companies")
    yield {"api": api, "client_id": client_id, "rows": rows}
    api.close()


def test_query_parameters_filter_sort_and_explain_their_mistakes(firm: dict[str, Any]) -> None:
    api: httpx.Client = firm["api"]
    rows = firm["rows"]
    richest = max(rows, key=lambda r: Decimal(r["values"]["cash"]))
    page = api.get("/api/v1/dashboard", params={"sort": "-cash", "limit": 1}).json()
    assert page["total"] == len(rows) and len(page["rows"]) == 1
    assert page["rows"][0]["company_id"] == richest["company_id"]
    threshold = f"cash:ge:{richest['values']['cash']}"
    only = api.get("/api/v1/dashboard", params={"threshold": threshold}).json()["rows"]
    assert [r["company_id"] for r in only] == [richest["company_id"]]
    assert api.get("/api/v1/dashboard", params={"text": richest["company_name"][:6]}).json()["total"] >= 1
    # Every company read: none failed or waiting, so none needs attention.
    assert api.get("/api/v1/dashboard", params={"needs_attention": "true"}).json()["total"] == 0

    for params, field in (
        ({"sort": "salary"}, "sort"),
        ({"threshold": "cash:lt:lots"}, "threshold"),
        ({"threshold": "wages:lt:10"}, "thresholds"),
        ({"threshold": "cash:between:10"}, "thresholds"),
        ({"limit": 100000}, None),
        ({"client_id": "not-a-uuid"}, None),
        ({"needs_attention": "perhaps"}, None),
    ):
        refused = api.get("/api/v1/dashboard", params=params)
        assert refused.status_code == 422, (params, refused.text)
        if field:
            assert refused.json()["detail"]["field"] == field, refused.text


def test_columns_preferences_and_views_belong_to_the_accountant(hub: Hub, firm: dict[str, Any]) -> None:
    api: httpx.Client = firm["api"]
    catalogue = api.get("/api/v1/columns").json()
    keys = [c["key"] for c in catalogue["columns"]]
    assert {"cash", "taxes_due", "overdue_sales_invoices_amount", "forecast_low_point"} <= set(keys)
    assert api.get("/api/v1/preferences").json()["columns"] == catalogue["default"]

    # A locale is also the accountant's language (README, "Languages"): en-GB keeps this
    # module's pages and messages English for the tests after this one.
    chosen = {
        "columns": ["forecast_low_point", "cash"],
        "locale": "en-GB",
        "page_size": 50,
        "reporting_currency": "EUR",
    }
    assert api.put("/api/v1/preferences", json=chosen).json() == chosen
    assert api.get("/api/v1/preferences").json() == chosen
    for bad in (
        {"columns": ["cash", "cash"]},
        {"columns": ["salary"]},
        {"locale": "<script>"},
        {"page_size": 7},
        {"reporting_currency": "eur"},
        {"reporting_currency": "EUROEUROEU"},
        {"reporting_currency": "€"},
    ):
        refused = api.put("/api/v1/preferences", json=bad)
        assert refused.status_code == 422, bad
        if "reporting_currency" in bad:
            assert "ISO 4217 currency code: three capital letters" in refused.text
    assert api.get("/api/v1/preferences").json() == chosen  # a refused change loses nothing
    # A code no client's BC has a rate for is the accountant's to choose: each row says why.
    unknown = chosen | {"reporting_currency": "XYZ"}
    assert api.put("/api/v1/preferences", json=unknown).json() == unknown
    page = api.get("/api/v1/dashboard").json()
    assert page["reporting_currency"] == "XYZ"
    for row in page["rows"]:
        for amount in (row["amounts"] or {}).values():
            assert amount["value"] is None and amount["not_converted"] in {"no_rate", "rates_not_read"}, amount
    assert api.put("/api/v1/preferences", json=chosen).json() == chosen

    view = {"name": "Short of cash", "query": {"thresholds": [{"column": "cash", "comparison": "lt", "value": "1000"}]}}
    created = api.post("/api/v1/views", json=view)
    assert created.status_code == 201, created.text
    assert api.post("/api/v1/views", json=view).status_code == 409
    colleague = hub.client("judy@fourthcoffee-accounting.example")
    assert colleague.get("/api/v1/views").json() == []
    assert colleague.delete(f"/api/v1/views/{created.json()['view_id']}").status_code == 404
    assert [v["name"] for v in api.get("/api/v1/views").json()] == ["Short of cash"]
    assert api.delete(f"/api/v1/views/{created.json()['view_id']}").status_code == 204
    assert api.get("/api/v1/views").json() == []


def test_company_details_and_another_firms_404(hub: Hub, firm: dict[str, Any]) -> None:
    api: httpx.Client = firm["api"]
    row = firm["rows"][0]
    path = f"/api/v1/clients/{row['client_id']}/companies/{row['company_id']}"
    details = api.get(path).json()
    figures = details["figures"]
    assert Decimal(figures["cash"]["total"]) == Decimal(row["values"]["cash"])
    assert len(figures["cash_flow_forecast"]["weeks"]) == 13
    assert all(i["link"].startswith("https://") for i in figures["overdue_sales_invoices"]["largest"])
    outsider = hub.client("mallory@wingtip-audit.example")
    assert outsider.get(path).status_code == 404
    assert api.get(f"/api/v1/clients/{row['client_id']}/companies/{uuid.uuid4()}").status_code == 404
    # The client card page too: the caller's own client opens, another firm's is not found.
    card = api.get(f"/clients/{row['client_id']}")
    assert card.status_code == 200 and "Test Client URL" in card.text
    assert outsider.get(f"/clients/{row['client_id']}").status_code == 404


@pytest.fixture(scope="module")
def second_gateway(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Another replica of the gateway on the same database and broker."""
    replica, url = hub.start_gateway_replica("gateway-replica", tmp_path_factory.mktemp("replica"))
    try:
        yield url
    finally:
        replica.stop()


@pytest.mark.parametrize("replica", ["same", "other"])
def test_refresh_progress_and_the_live_stream(
    hub: Hub, firm: dict[str, Any], second_gateway: str, replica: str
) -> None:
    """A page hears of a fresh row whichever replica it is connected to: the replica that
    projected the snapshot announces it on core NATS to every replica."""
    api: httpx.Client = firm["api"]
    live_url = hub.url if replica == "same" else second_gateway
    heard: list[dict[str, Any]] = []
    ready = threading.Event()

    def listen() -> None:
        timeout = httpx.Timeout(30, read=60)
        with (
            httpx.Client(base_url=live_url, headers=api.headers, timeout=timeout) as live,
            live.stream("GET", "/api/v1/live") as stream,
        ):
            assert stream.headers["content-type"].startswith("text/event-stream")
            event = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event == "ready":
                    ready.set()
                elif line.startswith("data: ") and event == "rows":
                    message = json.loads(line.removeprefix("data: "))
                    heard.append(message)
                    if any(r["state"] == "ok" and r["as_of"] not in before for r in message["rows"]):
                        return

    before = {r["as_of"] for r in api.get("/api/v1/dashboard").json()["rows"]}
    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert ready.wait(10), "the live stream never opened"
    started = api.post("/api/v1/refresh", json={"client_id": firm["client_id"]}).json()
    listener.join(60)
    assert not listener.is_alive(), "no fresh row arrived on the live stream"
    assert all(row["client_id"] == firm["client_id"] for message in heard for row in message["rows"])
    assert heard[-1]["states"]["ok"] >= 1

    def finished() -> dict[str, Any] | None:
        progress: dict[str, Any] = api.get(f"/api/v1/refresh-runs/{started['run_id']}").json()
        return progress if progress["total"] and progress["done"] == progress["total"] else None

    try:
        progress = eventually(finished, "the refresh to finish")
    except AssertionError as late:
        # What the run and its rows showed at the end, and what the fetchers did.
        shown = api.get(f"/api/v1/refresh-runs/{started['run_id']}").json()
        rows = [(r["company_name"], r["state"], r["as_of"]) for r in api.get("/api/v1/dashboard").json()["rows"]]
        raise AssertionError(f"{late}: {shown} {rows}\n{hub.logs()}") from late
    assert progress["refreshes"] == len(started["refresh_ids"]) == 1
    assert progress["total"] == len(firm["rows"]) and progress["failed"] == 0
    assert (
        hub.client("mallory@wingtip-audit.example").get(f"/api/v1/refresh-runs/{started['run_id']}").json()["total"]
        == 0
    )


def test_check_errors_lists_a_failed_test_with_its_details(firm: dict[str, Any]) -> None:
    api: httpx.Client = firm["api"]
    answer = api.post(
        "/api/v1/connection-tests",
        json={"client_url": "https://businesscentral.dynamics.com/no-such-tenant.example/Production"},
    )
    assert answer.json()["status"] == "failed", answer.text

    def listed() -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = api.get("/api/v1/errors").json()["failures"]
        return [e for e in entries if e["tenant"] == "no-such-tenant.example"]

    entry = eventually(listed, "the failed test in Check Errors")[0]
    assert entry["origin"] == "connection_test"
    assert entry["failure"]["summary"] and entry["failure"]["fix"]
    assert entry["failure"]["occurred_at"]
    assert api.get("/api/v1/errors", params={"limit": 0}).status_code == 422


def test_the_pages_need_a_session_and_the_api_is_described(hub: Hub) -> None:
    for path in ("/", "/clients", "/clients/new", "/errors"):
        response = httpx.get(f"{hub.url}{path}", follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/sign-in"), path
    spec = httpx.get(f"{hub.url}/openapi.json").json()
    for path in ("/api/v1/dashboard", "/api/v1/live", "/api/v1/errors", "/api/v1/preferences", "/api/v1/views"):
        assert path in spec["paths"], path


async def test_live_streams_are_capped_per_accountant(hub: Hub, firm: dict[str, Any]) -> None:
    """An accountant may hold 20 live pages on a replica; the 21st is refused until one closes."""
    headers = dict(firm["api"].headers)
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
    async with httpx.AsyncClient(base_url=hub.url, headers=headers, timeout=30, limits=limits) as client:
        # Each open stream and its line reader stay referenced: dropping a reader closes it.
        streams: list[tuple[httpx.Response, Any]] = []

        async def open_stream() -> httpx.Response:
            response = await client.send(client.build_request("GET", "/api/v1/live"), stream=True)
            if response.status_code == 200:
                lines = response.aiter_lines()
                # Scattered around 2 s, so a stopped replica's pages do not all come back at once.
                retry = await anext(lines)
                assert retry.startswith("retry: ") and 1000 <= int(retry.removeprefix("retry: ")) <= 4000, retry
                streams.append((response, lines))
            else:
                await response.aread()
            return response

        try:
            for _ in range(20):
                assert (await open_stream()).status_code == 200
            refused = await open_stream()
            assert refused.status_code == 429, refused.status_code
            assert "20 live pages" in refused.json()["detail"]
            closed, _ = streams.pop()
            await closed.aclose()
            deadline = time.monotonic() + 10
            while (await open_stream()).status_code != 200:
                assert time.monotonic() < deadline, "a closed stream was never released"
                await asyncio.sleep(0.2)
        finally:
            for response, _ in streams:
                await response.aclose()


def test_a_gateway_stops_within_its_grace_while_a_page_is_live(
    hub: Hub, firm: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A live stream never ends by itself; on SIGTERM the gateway ends it at once (the page
    reconnects, to another replica) instead of waiting for it until it is killed."""
    replica, url = hub.start_gateway_replica("gateway-stopping", tmp_path_factory.mktemp("stopping"))
    ended = threading.Event()
    opened = threading.Event()

    def listen() -> None:
        with (
            httpx.Client(base_url=url, headers=firm["api"].headers, timeout=60) as live,
            live.stream("GET", "/api/v1/live") as stream,
        ):
            try:
                for line in stream.iter_lines():
                    if line == "event: ready":
                        opened.set()
            except httpx.HTTPError:
                pass
        ended.set()

    try:
        threading.Thread(target=listen, daemon=True).start()
        assert opened.wait(10), "the live stream never opened"
        started = time.monotonic()
        replica.process.send_signal(signal.SIGTERM)
        assert ended.wait(5), "the page's stream was left open"
        # Well within its own grace (the streams end first, nothing is cancelled), and so
        # within the supervisor's and a pod's.
        replica.process.wait(timeout=15)
        assert time.monotonic() - started < 5, replica.log()[-3000:]
        assert "Exception in ASGI application" not in replica.log()
    finally:
        replica.kill()


def test_a_gateway_that_cannot_start_exits_with_an_error(hub: Hub, tmp_path: Path) -> None:
    """A start that fails (here its database cannot be opened) is an error exit, so a
    supervisor or Kubernetes restarts it and says so, instead of seeing it complete."""
    # A file where the database's folder should be: nothing can create the database there.
    (tmp_path / "not-a-folder").write_text("")
    broken = start_service(
        "gateway-broken",
        "gateway",
        {
            **hub.gateway_environment,
            "HUB_PORT": str(free_port()),
            "HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'not-a-folder' / 'gateway.db'}",
        },
        tmp_path,
    )
    try:
        assert broken.process.wait(timeout=60) == 3, broken.log()[-3000:]
    finally:
        broken.kill()
