"""Pages that read again on each change or filter show the answer to their latest read: an
older answer arriving last (reads on their way at once may answer in any order) must not
replace it, nor show under another filter's heading. Each test holds the page's first
answer back until the accountant changed the filter and the newer answer showed."""

from __future__ import annotations

import re
import time

from playwright.sync_api import Page, Route, expect

from tests.conftest import Sandbox
from tests.e2e.browser import consented_tenant, sign_in
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

    def release(self, page: Page) -> None:
        """Answer the held request with what the hub answers now, and let the page take it."""
        [route] = self.held
        with page.expect_response(lambda response: response.request == route.request):
            route.fulfill(response=route.fetch())
        # The page's handler runs after the response event; a round trip through the page
        # lets it finish.
        page.evaluate("() => new Promise((resolve) => setTimeout(resolve, 200))")


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
    page.route(re.compile(r"/api/v1/problems\?.*status=open"), first_open)
    page.goto(f"{hub.url}/errors")
    page.get_by_label("Show").select_option("resolved")
    body = page.locator("#errors-body")
    expect(body).to_contain_text("No resolved problems yet.")
    first_open.release(page)
    expect(body).to_contain_text("No resolved problems yet.")
    expect(body).not_to_contain_text("Not yet allowed")


def test_the_alerts_page_shows_the_alerts_asked_for_last(page: Page, hub: Hub) -> None:
    sign_in(page, hub, "otto@ordered-alerts-accounting.example")
    first_open = HeldBack()
    page.route(re.compile(r"/api/v1/alerts\?status=open$"), first_open)
    page.goto(f"{hub.url}/alerts")
    page.get_by_label("Show ended alerts too").check()
    body = page.locator("#alerts-body")
    expect(body).to_contain_text("No alerts yet.")
    first_open.release(page)
    expect(body).to_contain_text("No alerts yet.")
    expect(body).not_to_contain_text("No open alerts")
