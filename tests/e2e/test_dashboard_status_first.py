"""The dashboard reads status first at 1280×800: the practice summary, state and age always
in view, no horizontal scroll with the default columns, menus that are never clipped,
actions that answer in place (a workbook that cannot be made says why) and keep the focus
where the accountant was."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import Page, Route, expect

from tests.conftest import Sandbox
from tests.e2e.browser import connect_consented_tenant, expect_rows_ok, row_of, shot, sign_in
from tests.e2e.conftest import Hub
from tests.support.connect import add_connected_client
from tests.support.waiting import eventually

STICKY_LEFTS = """() => {
  const lefts = (cells) => [...cells].map((cell) => Math.round(cell.getBoundingClientRect().left));
  return [lefts(document.querySelectorAll("#grid-head th.sticky")),
          lefts(document.querySelector("#grid-body tr").querySelectorAll("td.sticky"))];
}"""


def _sticky_columns_aligned(page: Page) -> bool:
    heads, cells = page.evaluate(STICKY_LEFTS)
    return bool(heads == cells)


UNCLIPPED = """(item) => {
  const box = item.getBoundingClientRect();
  const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
  return box.bottom <= window.innerHeight && box.right <= window.innerWidth && (hit === item || item.contains(hit));
}"""


def test_status_first_at_1280_by_800(page: Page, hub: Hub, sandbox: Sandbox, faults: httpx.Client) -> None:
    email = "judy@northwind-practice.example"
    sign_in(page, hub, email)
    # A new firm's empty dashboard says what to do next, with the button to do it.
    expect(page.get_by_role("link", name="Add client")).to_have_attribute("href", "/clients/new")

    connected = connect_consented_tenant(sandbox, hub.client(email))
    tenant, names = connected.tenant, connected.company_names
    expect_rows_ok(page, names)
    expect(page.locator("#summary-ok")).to_contain_text(str(len(names)))
    # Every company read has a health indicator with its score and reasons.
    for dot in page.locator("#grid-body .health").all():
        expect(dot).to_have_attribute("title", re.compile(r"^Health \d+ of 100"))

    # 1. The default columns fit: neither the table nor the page scrolls sideways.
    widths = page.evaluate(
        "() => { const w = document.getElementById('table-wrap');"
        " return [w.scrollWidth, w.clientWidth, [...document.querySelectorAll('#grid-head th')]"
        ".map(c => [c.textContent, Math.round(c.getBoundingClientRect().width)])]; }"
    )
    assert widths[0] <= widths[1] + 1, widths
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    # Short headings: no figure heading takes more than three lines (they took four).
    for height in page.locator("#grid-head th.amount").evaluate_all(
        "cells => cells.map(c => c.getBoundingClientRect().height)"
    ):
        assert height < 66, height

    # 2. A failed row is visible at once, its state in view, and the summary counts it.
    faults.put(f"/tenants/{tenant['id']}/faults", json={"kind": "invalid_credentials"}).raise_for_status()
    first = row_of(page, names[0])
    menu_button = first.get_by_role("button", name=re.compile("Actions for"))
    menu_button.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("menuitem", name="Refresh this company")).to_be_focused()
    page.keyboard.press("Enter")
    # The menu closes and the focus is back on its button, and stays there when the row is
    # replaced by its fresh version.
    expect(menu_button).to_be_focused()
    expect(first.locator(".state")).to_have_text("Failed", timeout=60_000)
    expect(first.get_by_role("button", name=re.compile("Actions for"))).to_be_focused()
    # The sticky heading cells stay over their columns after the live change of the row.
    eventually(lambda: _sticky_columns_aligned(page), "sticky headings over their columns", timeout=5)
    state_box = first.locator(".state").bounding_box()
    assert state_box is not None
    assert state_box["x"] + state_box["width"] <= 1280 and state_box["y"] + state_box["height"] <= 800, state_box
    # Its health says so, with the reason.
    health = first.locator(".health")
    expect(health).to_have_attribute(
        "title", re.compile(r"Health \d+ of 100, (worth a look|needs action): The last refresh failed")
    )
    attention = page.locator("#summary-attention")
    expect(attention).to_contain_text(re.compile(r"needs? attention"))
    expect(attention.locator(".tile-value")).not_to_have_text("0")
    shot(page, "dashboard-status-first")

    # 3. A workbook that cannot be made says why on the page; nothing is saved.
    downloads: list[object] = []
    page.on("download", lambda download: downloads.append(download))
    first.get_by_role("button", name=re.compile("Actions for")).click()
    page.get_by_role("menuitem", name="Financial statements (Excel)").click()
    expect(page.locator("#page-error")).to_contain_text("could not be downloaded", timeout=60_000)
    assert downloads == []

    # 4. The menu of the last row floats above the table's scroll box: every item reachable.
    last = page.locator("#grid-body tr").last
    last.get_by_role("button", name=re.compile("Actions for")).click()
    for item in page.locator("ul[role=menu]:not([hidden]) [role=menuitem]").all():
        assert item.evaluate(UNCLIPPED), item.text_content()
    page.keyboard.press("Escape")

    # 5. "Need attention" shows only the problems.
    attention.click()
    expect(page.get_by_label("Needs attention")).to_be_checked()
    expect(page.locator("#grid-body .state", has_text=re.compile(r"^OK$"))).to_have_count(0)
    expect(page.locator("#grid-body .state", has_text="Failed").first).to_be_visible()

    # 6. Enter on a column's checkbox does not save the dialog half-chosen.
    page.get_by_role("button", name="Client Summary").click()
    page.get_by_role("menuitem", name="Choose columns…").click()
    dialog = page.locator("#columns-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("input[type=checkbox]").first.focus()
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def test_check_errors_is_a_worklist_that_resolves_itself(
    page: Page, hub: Hub, sandbox: Sandbox, faults: httpx.Client
) -> None:
    email = "kim@fourthcoffee-practice.example"
    sign_in(page, hub, email)
    connected = connect_consented_tenant(sandbox, hub.client(email))
    tenant, names = connected.tenant, connected.company_names
    first = row_of(page, names[0])
    expect(first.locator(".state")).to_have_text("OK", timeout=60_000)

    # Two failing refreshes of one company are one problem, seen twice.
    faults.put(f"/tenants/{tenant['id']}/faults", json={"kind": "invalid_credentials"}).raise_for_status()
    for _ in range(2):
        first.get_by_role("button", name=re.compile("Actions for")).click()
        page.get_by_role("menuitem", name="Refresh this company").click()
        expect(page.locator("#progress-line")).to_contain_text("1 failed", timeout=60_000)
    page.goto(f"{hub.url}/errors")
    problem = page.locator("#errors-body tr", has_text="rejected the hub's credentials")
    expect(problem).to_have_count(1)
    expect(problem).to_contain_text("Open")
    expect(problem).to_contain_text("2 times")
    expect(problem).to_contain_text("rejected the hub's credentials")
    problem.get_by_text("HTTP 401").click()
    expect(problem.locator("dl.technical")).to_contain_text("Correlation id")
    # Filterable by kind: another kind lists nothing.
    page.get_by_label("Kind").select_option("throttled")
    expect(page.locator("#errors-body")).to_contain_text("No open problems")
    page.get_by_label("Kind").select_option("")
    expect(problem).to_have_count(1)

    # Fixed at the client, refreshed: the problem leaves the open list by itself...
    faults.delete("/faults").raise_for_status()
    hub.client(email).post("/api/v1/refresh", json={}).raise_for_status()
    expect(page.locator("#errors-body")).to_contain_text("No open problems", timeout=60_000)
    # ...and stays in the resolved ones, and every failure in the history.
    page.get_by_label("Show").select_option("resolved")
    # (The client's wait for permission before it was connected is resolved there too.)
    resolved = page.locator("#errors-body tr", has_text="rejected the hub's credentials")
    expect(resolved).to_contain_text("Resolved")
    expect(resolved).to_contain_text("2 times")
    page.get_by_label("Show").select_option("history")
    expect(page.locator("#errors-body tr", has_text="rejected the hub's credentials")).to_have_count(2)
    shot(page, "check-errors-history")


def test_readable_on_a_phone_and_a_tablet(page: Page, hub: Hub, sandbox: Sandbox) -> None:
    email = "lena@alpine-practice.example"
    sign_in(page, hub, email)
    connect_consented_tenant(sandbox, hub.client(email))
    expect(page.locator("#grid-body .state", has_text="OK").first).to_be_visible(timeout=60_000)
    for width, height in ((390, 844), (580, 900), (820, 1180)):
        page.set_viewport_size({"width": width, "height": height})
        for path in ("/", "/errors", "/clients", "/clients/new"):
            page.goto(f"{hub.url}{path}")
            page.wait_for_load_state("networkidle")
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{path} at {width} px is {overflow} px wider than the screen"
        page.goto(f"{hub.url}/")
        # The rows stay usable: the table scrolls inside its own box, its state column in view.
        expect(page.locator("#grid-body .state").first).to_be_in_viewport()
        # Unseen, the selection controls take no line of their own on a phone; seen, they
        # move no row (the next tick is where the pointer is).
        bulk = page.locator("#bulk")
        first_row = page.locator("#grid-body tr").first
        expect(page.locator("#live")).to_have_text("Live")
        # The page may still redraw its rows once after going live (a row is briefly gone).
        page.wait_for_load_state("networkidle")
        expect(first_row).to_be_visible()
        before = first_row.bounding_box()
        assert before is not None
        if width < 600:
            assert bulk.bounding_box() is None
        first_row.get_by_role("checkbox").check()
        expect(page.locator("#bulk-count")).to_have_text("1 selected")
        expect(bulk).to_be_in_viewport()
        assert first_row.bounding_box() == before
        if width < 600:
            # The foot of the page can still be scrolled clear of them.
            pager = page.locator(".pager").last
            pager.scroll_into_view_if_needed()
            page.evaluate("() => window.scrollTo(0, document.documentElement.scrollHeight)")
            pager_box, bulk_box = pager.bounding_box(), bulk.bounding_box()
            assert pager_box is not None and bulk_box is not None
            assert pager_box["y"] + pager_box["height"] <= bulk_box["y"], (pager_box, bulk_box)
            shot(page, "dashboard-phone-selection")
            # The details pane covers the whole screen, the floating controls included.
            first_row.get_by_role("button", name=re.compile("Actions for")).click()
            page.get_by_role("menuitem", name="Company details").click()
            bulk_box = bulk.bounding_box()
            assert bulk_box is not None
            covering = page.evaluate(
                "([x, y]) => document.elementFromPoint(x, y)?.closest('#details') !== null",
                [bulk_box["x"] + 2, bulk_box["y"] + bulk_box["height"] / 2],
            )
            assert covering, f"the selection controls show beside the details pane at {width} px"
            page.get_by_role("button", name="Close company details").click()
        page.get_by_role("button", name="Clear selection").click()
        expect(page.locator("#bulk-count")).to_be_hidden()
    shot(page, "dashboard-tablet")


def test_a_live_change_waits_while_its_rows_menu_is_open(page: Page, hub: Hub, sandbox: Sandbox) -> None:
    """The menu stays under the pointer while the row's figures change; the row shows them
    once the menu closes."""
    email = "maud@openmenu-practice.example"
    sign_in(page, hub, email)
    api = hub.client(email)
    connected = connect_consented_tenant(sandbox, api)
    client_id, name = connected.client_id, connected.company_names[0]
    row = row_of(page, name)
    expect(row.locator(".state")).to_have_text("OK", timeout=60_000)
    as_of = row.locator("td[data-as-of]")
    before = as_of.get_attribute("data-as-of") or ""

    row.get_by_role("button", name=re.compile("Actions for")).click()
    menu_item = page.get_by_role("menuitem", name="Company details")
    expect(menu_item).to_be_visible()
    run = api.post("/api/v1/refresh", json={"client_id": client_id}).json()["run_id"]

    def refreshed() -> bool:
        progress = api.get(f"/api/v1/refresh-runs/{run}").json()
        return bool(progress["total"]) and progress["done"] == progress["total"]

    eventually(refreshed, "the client's refresh", timeout=60)
    page.wait_for_timeout(1500)  # the live notice has reached the page by now
    expect(menu_item).to_be_visible()
    expect(as_of).to_have_attribute("data-as-of", before)  # held back while the menu is open
    menu_item.click()
    expect(page.locator("#details")).to_be_visible()
    expect(as_of).not_to_have_attribute("data-as-of", before, timeout=10_000)


def test_a_page_asked_for_before_a_menu_opened_waits_for_it_too(page: Page, hub: Hub, sandbox: Sandbox) -> None:
    """A live reload whose answer lands after a row's menu opened leaves the menu open (it
    was drawn over, closed, and its item could not be clicked); the page is read again once
    the menu closes."""
    email = "nils@slowpage-practice.example"
    sign_in(page, hub, email)
    api = hub.client(email)
    name = connect_consented_tenant(sandbox, api).company_names[0]
    row = row_of(page, name)
    expect(row.locator(".state")).to_have_text("OK", timeout=60_000)

    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route(re.compile(r"/api/v1/dashboard\?"), hold)
    # A second client changes the page's counts: the live stream has the page read again.
    added = api.post(
        "/api/v1/clients",
        json={"name": "Second Client", "client_url": f"{sandbox.web_client}/cronus-sample.onmicrosoft.com/Production"},
    )
    assert added.status_code == 202, added.text
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(100)
    assert held, "the page did not read the dashboard again after a client was added"

    row.get_by_role("button", name=re.compile("Actions for")).click()
    menu_item = page.get_by_role("menuitem", name="Company details")
    expect(menu_item).to_be_visible()
    for route in held:
        route.continue_()
    page.unroute(re.compile(r"/api/v1/dashboard\?"))
    page.wait_for_timeout(1000)  # the held answer has reached the page by now
    expect(menu_item).to_be_visible()

    page.keyboard.press("Escape")
    expect(row_of(page, "Second Client").first).to_be_visible(timeout=10_000)


def test_an_open_check_errors_page_is_not_read_again_for_a_client_without_problems(
    page: Page, hub: Hub, sandbox: Sandbox, faults: httpx.Client
) -> None:
    """A firm's rows change all day: the open problems are read again when a client of
    theirs changes, not at every change of another client (each read went through the
    firm's whole failure history)."""
    email = "lou@wingtip-practice.example"
    sign_in(page, hub, email)
    api = hub.client(email)
    failing = connect_consented_tenant(sandbox, api, "Failing client")
    healthy = add_connected_client(
        sandbox,
        api,
        {"name": "Healthy client", "client_url": f"{sandbox.web_client}/cronus-sample.onmicrosoft.com/Production"},
    )
    expect(row_of(page, "Healthy client").locator(".state").first).to_have_text("OK", timeout=60_000)
    faults.put(f"/tenants/{failing.tenant['id']}/faults", json={"kind": "invalid_credentials"}).raise_for_status()
    api.post("/api/v1/refresh", json={"client_id": failing.client_id}).raise_for_status()
    page.goto(f"{hub.url}/errors")
    expect(page.locator("#errors-body tr", has_text="Failing client")).to_have_count(1, timeout=60_000)

    reads: list[str] = []
    page.on("request", lambda request: reads.append(request.url) if "/api/v1/problems" in request.url else None)
    started = api.post("/api/v1/refresh", json={"client_id": healthy}).json()["run_id"]

    def through() -> bool:
        progress = api.get(f"/api/v1/refresh-runs/{started}").json()
        return bool(progress["total"] and progress["done"] + progress["failed"] >= progress["total"])

    eventually(through, "the healthy client's refresh", timeout=60)
    page.wait_for_timeout(1500)  # the live stream's rows have reached the page by now
    assert reads == [], reads
    # The failing client fixed and read: its problem leaves the open list by itself.
    faults.delete("/faults").raise_for_status()
    api.post("/api/v1/refresh", json={"client_id": failing.client_id}).raise_for_status()
    expect(page.locator("#errors-body")).to_contain_text("No open problems", timeout=60_000)
