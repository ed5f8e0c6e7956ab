"""Pages that read again on each change or filter show what was asked for last: an answer
read for a filter the accountant has changed since must not be drawn, even when it arrives
last. Each test holds the page's first answer back until the filter changed (the live
stream is kept away, so no later change draws the page again and hides a wrong answer)."""

from __future__ import annotations

import re
import time

from playwright.sync_api import APIResponse, Page, Route, expect

from tests.conftest import Sandbox
from tests.e2e.browser import connect_consented_tenant, consented_tenant, row_of, sign_in
from tests.e2e.conftest import Hub


class HeldBack:
    """Holds the first request a route matches; later ones go through."""

    def __init__(self) -> None:
        self.held: list[Route] = []

    def __call__(self, route: Route) -> None:
        if self.held:
            route.continue_()
        else:
            self.held.append(route)

    def wait_until_held(self, page: Page) -> None:
        """Wait for the page's first read to reach the route: changing the filter before
        the page script has read it would make no first read at all to hold back."""
        deadline = time.monotonic() + 10
        while not self.held:
            assert time.monotonic() < deadline, "the page never made its first read"
            page.wait_for_timeout(50)

    def release(self) -> None:
        """Answer the held request with what the hub answers now."""
        [route] = self.held
        route.fulfill(response=route.fetch())


def _settled(page: Page) -> None:
    """Time for the page to take the answers on their way (nothing live comes meanwhile)."""
    page.wait_for_load_state("networkidle")
    page.evaluate("() => new Promise((resolve) => setTimeout(resolve, 300))")


def _without_live_changes(page: Page) -> None:
    page.route(re.compile(r"/api/v1/live"), lambda route: route.abort())


def test_check_errors_shows_the_view_asked_for_last(page: Page, hub: Hub, sandbox: Sandbox) -> None:
    email = "olga@ordered-errors-accounting.example"
    sign_in(page, hub, email)
    api = hub.client(email)
    # A client whose tenant has not allowed the firm: an open problem, and none resolved.
    tenant = consented_tenant(sandbox)
    production = next(e for e in tenant["environments"] if e["name"] == "Production")
    added = api.post("/api/v1/clients", json={"name": "Not yet allowed", "client_url": production["client_url"]})
    assert added.status_code == 202, added.text
    deadline = time.monotonic() + 60
    while not api.get("/api/v1/problems", params={"status": "open"}).json()["problems"]:
        assert time.monotonic() < deadline, "the client's refused read never became a problem"
        time.sleep(0.3)

    first_open = HeldBack()
    _without_live_changes(page)
    page.route(re.compile(r"/api/v1/problems\?.*status=open"), first_open)
    page.goto(f"{hub.url}/errors")
    first_open.wait_until_held(page)
    page.get_by_label("Show").select_option("resolved")
    first_open.release()
    body = page.locator("#errors-body")
    expect(body).to_contain_text("No resolved problems yet.")
    _settled(page)
    assert "Not yet allowed" not in body.inner_text()
    expect(page.locator("#errors-head")).to_contain_text("Status")


def test_the_alerts_page_shows_the_alerts_asked_for_last(page: Page, hub: Hub) -> None:
    sign_in(page, hub, "otto@ordered-alerts-accounting.example")
    first_open = HeldBack()
    _without_live_changes(page)
    page.route(re.compile(r"/api/v1/alerts\?status=open$"), first_open)
    page.goto(f"{hub.url}/alerts")
    first_open.wait_until_held(page)
    page.get_by_label("Show ended alerts too").check()
    first_open.release()
    body = page.locator("#alerts-body")
    expect(body).to_contain_text("No alerts yet.")
    _settled(page)
    assert "No open alerts" not in body.inner_text()


def test_a_dashboard_read_answered_before_a_live_change_does_not_undo_it(
    page: Page, hub: Hub, sandbox: Sandbox
) -> None:
    """The page's reads are answered as the figures were, then held back while a refresh
    changes the rows live: drawn late, they would show the rows as before the refresh until
    some later change came; the page reads again instead."""
    email = "rhea@late-page-accounting.example"
    sign_in(page, hub, email)
    api = hub.client(email)
    connected = connect_consented_tenant(sandbox, api, name="Late page client")
    name = connected.company_names[0]
    expect(row_of(page, name).locator(".state")).to_have_text("OK", timeout=60_000)

    held: list[tuple[Route, APIResponse]] = []

    def answered_now_drawn_later(route: Route) -> None:
        if len(held) < 2:  # the page's first read and the live stream's, at (re)load
            held.append((route, route.fetch()))
        else:
            route.continue_()

    page.route(re.compile(r"/api/v1/dashboard\?(?!.*limit=1\b)"), answered_now_drawn_later)
    page.reload()
    deadline = time.monotonic() + 10
    while len(held) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    run = api.post("/api/v1/refresh", json={"client_id": connected.client_id}).json()["run_id"]
    deadline = time.monotonic() + 60
    while (
        not (progress := api.get(f"/api/v1/refresh-runs/{run}").json())["total"] or progress["done"] < progress["total"]
    ):
        assert time.monotonic() < deadline, "the client's refresh never ended"
        page.wait_for_timeout(300)
    fresh = {
        r["company_name"]: r["as_of"]
        for r in api.get("/api/v1/dashboard").json()["rows"]
        if r["client_id"] == connected.client_id
    }
    page.wait_for_timeout(1500)  # the live notices have reached the page
    for route, answer in held:
        route.fulfill(response=answer)
    expect(row_of(page, name).locator("td[data-as-of]")).to_have_attribute("data-as-of", fresh[name], timeout=10_000)


def test_live_reloads_of_a_filtered_dashboard_wait_for_each_other(page: Page, hub: Hub, sandbox: Sandbox) -> None:
    """A filtered page reads its rows again on a change. While one such read is on its way,
    more changes ask for one more read after it, not a read each: started every 400 ms, each
    would drop the answer before it, and a slow page would draw nothing during a refresh of
    every company."""
    email = "pia@ordered-live-accounting.example"
    sign_in(page, hub, email)
    api = hub.client(email)
    connected = connect_consented_tenant(sandbox, api)
    expect(row_of(page, connected.company_names[0]).locator(".state")).to_have_text("OK", timeout=60_000)
    page.get_by_label("Search").fill(connected.company_names[0])
    expect(page.locator("#grid-body tr")).to_have_count(1)
    _settled(page)

    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route(re.compile(r"/api/v1/dashboard\?"), hold)

    def refreshed_and_held(count: int) -> None:
        assert api.post("/api/v1/refresh", json={"client_id": connected.client_id}).status_code == 202
        deadline = time.monotonic() + 30
        while len(held) < count:
            assert time.monotonic() < deadline, "no live read of the page"
            page.wait_for_timeout(50)

    refreshed_and_held(1)
    # More changes, seconds after: each would have started another read.
    api.post("/api/v1/refresh", json={"client_id": connected.client_id})
    page.wait_for_timeout(2_500)
    assert len(held) == 1, f"{len(held)} live reads of the page at once"
    held[0].fulfill(response=held[0].fetch())
    # Answered: the one more read the changes asked for goes out now, and only it.
    deadline = time.monotonic() + 10
    while len(held) < 2:
        assert time.monotonic() < deadline, "the changes asked for no read after the first"
        page.wait_for_timeout(50)
    page.wait_for_timeout(1_000)
    assert len(held) == 2, f"{len(held) - 1} reads after the first"
    page.unroute(re.compile(r"/api/v1/dashboard\?"))  # lets the held one through
    expect(row_of(page, connected.company_names[0]).locator(".state")).to_have_text("OK", timeout=60_000)
