"""The open dashboard stays live through what a hosted hub meets: a stream the server
refused (too many tabs, a replica failing) is opened again by itself, and a change that
moves a row under the page's order moves it there."""

from __future__ import annotations

from playwright.sync_api import Page, Route, expect

from tests.conftest import Sandbox
from tests.e2e.browser import connect_consented_tenant, row_of, sign_in
from tests.e2e.conftest import Hub


def test_a_live_stream_the_server_refused_is_opened_again(page: Page, hub: Hub) -> None:
    """A stream answered with an error is one the browser gives up on for good; the page
    said "Reconnecting…" for ever and never went live again."""
    refused: list[str] = []

    def refuse_twice(route: Route) -> None:
        if len(refused) < 2:
            refused.append(route.request.url)
            route.fulfill(status=503, content_type="application/json", body='{"detail": "busy"}')
        else:
            route.continue_()

    page.route("**/api/v1/live", refuse_twice)
    sign_in(page, hub, "lou@stubborn-stream-accounting.example")
    expect(page.locator("#live")).to_have_text("Reconnecting…")
    expect(page.locator("#live")).to_have_text("Live", timeout=30_000)
    assert len(refused) == 2


def test_a_client_renamed_on_a_page_sorted_by_name_moves_to_its_place(page: Page, hub: Hub, sandbox: Sandbox) -> None:
    email = "nia@renamed-rows-accounting.example"
    sign_in(page, hub, email)
    api = hub.client(email)
    connected = connect_consented_tenant(sandbox, api, name="Zulu client")
    client_url = str(connected.production["client_url"])
    # A second client, waiting for its tenant's permission: one row, first by name.
    waiting = {"name": "Mike client", "client_url": client_url.replace("/Production", "/Sandbox")}
    assert api.post("/api/v1/clients", json=waiting).status_code in (200, 201, 202)
    expect(row_of(page, "Zulu client").first.locator(".state")).to_have_text("OK", timeout=60_000)
    rows = page.locator("#grid-body tr")
    expect(rows.first).to_contain_text("Mike client")
    renamed = api.put(f"/api/v1/clients/{connected.client_id}", json={"name": "Alpha client", "client_url": client_url})
    assert renamed.status_code == 202, renamed.text[:300]
    expect(rows.first).to_contain_text("Alpha client", timeout=20_000)
    expect(rows.last).to_contain_text("Mike client")
