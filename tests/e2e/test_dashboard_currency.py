"""A reporting currency at 1280×800: chosen in Columns and display, amounts converted with
each client's own BC rates and marked "≈" (the original, rate and date on hover), the
rows sorted by the converted amount, and an amount without a rate marked and sorted last."""

from __future__ import annotations

import re
from decimal import Decimal

from playwright.sync_api import Page, expect

from tests.conftest import Sandbox
from tests.e2e.browser import connect_consented_tenant, expect_rows_ok, row_of, shot, sign_in
from tests.e2e.conftest import Hub
from tests.support.connect import add_connected_client
from tests.support.waiting import eventually

CELLS = """() => [...document.querySelectorAll("#grid-body tr")].map((row) => {
  const cell = row.querySelectorAll("td.amount")[0];
  return [row.querySelectorAll("td.sticky")[2].textContent, cell.dataset.converted || "", cell.dataset.value || "",
          cell.getAttribute("title") || "", cell.textContent];
})"""


def _choose_currency(page: Page, currency: str) -> None:
    page.get_by_role("button", name="Client Summary ▾").click()
    page.get_by_role("menuitem", name="Choose columns…").click()
    page.get_by_label("Reporting currency").select_option(currency)
    page.locator("#columns-save").click()
    expect(page.locator("#columns-dialog")).not_to_be_visible()


def _sorted_cells(page: Page) -> list[list[str]] | None:
    cells: list[list[str]] = page.evaluate(CELLS)
    amounts = [Decimal(value) for _, mark, value, _, _ in cells if mark in ("yes", "same")]
    return cells if amounts and amounts == sorted(amounts, reverse=True) else None


def _sort_by_cash_descending(page: Page) -> None:
    heading = page.locator('#grid-head th[data-sort-key="cash"]')
    heading.get_by_role("button").click()
    expect(heading).to_have_attribute("aria-sort", "ascending")
    heading.get_by_role("button").click()
    expect(heading).to_have_attribute("aria-sort", "descending")


def test_a_converted_sort_at_1280_by_800(page: Page, hub: Hub, sandbox: Sandbox) -> None:
    email = "ivan@fabrikam-accountants.example"
    sign_in(page, hub, email)
    sample = f"{sandbox.web_client}/cronus-sample.onmicrosoft.com/Production"
    add_connected_client(sandbox, hub.client(email), {"name": "CRONUS", "client_url": sample})
    names = ["CRONUS UK Ltd.", "CRONUS USA, Inc.", *connect_consented_tenant(sandbox, hub.client(email)).company_names]
    expect_rows_ok(page, names)
    # The firm's currencies (books and rates) are offered from the page's next load.
    page.reload()

    # 1. In euros: every amount converted with its company's own rates, marked, and sorted
    # by the converted amount, whatever each company's own currency.
    _choose_currency(page, "EUR")
    _sort_by_cash_descending(page)
    expect(page.locator('#grid-head th[data-sort-key="cash"]')).to_have_attribute("title", re.compile("in EUR"))
    # Converted amounts and those already in euros, in one order (once the sorted page came).
    cells = eventually(lambda: _sorted_cells(page), "rows sorted by the amount in euros", timeout=20)
    assert len(cells) == len(names) and any(mark == "yes" for _, mark, _, _, _ in cells), cells
    uk = next(cell for cell in cells if cell[0] == "CRONUS UK Ltd.")
    assert uk[1] == "yes" and uk[4].startswith("≈"), uk
    # The marks take no width: the table still fits the screen.
    assert page.evaluate(
        "() => { const w = document.getElementById('table-wrap'); return w.scrollWidth <= w.clientWidth + 1; }"
    )
    assert re.match(r"Converted from .+ at 1 EUR = [\d.]+ GBP \(rate from .+\)$", uk[3]), uk
    # The summary totals overdue amounts in euros, never adding up different currencies.
    expect(page.locator("#summary-overdue_sales_invoices_amount")).to_contain_text("overdue sales")
    expect(page.locator("#summary-overdue_sales_invoices_amount .tile-value")).to_contain_text("EUR")
    # The details pane keeps the company's own amounts and says how the dashboard converts them.
    row_of(page, "CRONUS UK Ltd.").get_by_role("button", name="Details of CRONUS UK Ltd.").click()
    expect(page.locator("#details-conversion")).to_contain_text("1 EUR =")
    expect(page.locator("#details-body")).to_contain_text("GBP")
    page.locator("#details-rates summary").click()
    expect(page.locator("#details-rates li", has_text=re.compile(r"^1 EUR = [\d.]+ GBP \(from "))).to_have_count(1)
    shot(page, "dashboard-converted-sort")
    page.keyboard.press("Escape")

    # 2. In Danish kroner: US companies keep no DKK rate, so their amounts stay in dollars,
    # marked with the reason, and sort after every converted one.
    _choose_currency(page, "DKK")
    usa = row_of(page, "CRONUS USA, Inc.").locator("td.amount").first
    expect(usa).to_have_attribute("data-converted", "no")
    expect(usa).to_have_attribute("title", re.compile("no DKK rate in this client's Business Central"))
    expect(usa).to_contain_text("USD")
    cells = eventually(lambda: _sorted_cells(page), "rows sorted by the amount in kroner", timeout=20)
    marks = [mark for _, mark, _, _, _ in cells]
    assert "no" in marks and marks.index("no") > max(i for i, mark in enumerate(marks) if mark != "no"), cells
    shot(page, "dashboard-unconverted-last")

    # 3. Back to each company's own currency: no marks.
    _choose_currency(page, "")
    expect(page.locator("#grid-body td.converted, #grid-body td.unconverted")).to_have_count(0)

    # 4. Euros chosen in another tab: the next live rows come in euros, and this page is
    # loaded again, so its headings and totals say euros too, not only the rows.
    api = hub.client(email)
    chosen = api.get("/api/v1/preferences").raise_for_status().json()
    api.put("/api/v1/preferences", json={**chosen, "reporting_currency": "EUR"}).raise_for_status()
    client_id = next(c["client_id"] for c in api.get("/api/v1/clients").json()["clients"] if c["name"] == "CRONUS")
    api.post("/api/v1/refresh", json={"client_id": client_id}).raise_for_status()
    expect(page.locator('#grid-head th[data-sort-key="cash"]')).to_have_attribute(
        "title", re.compile("in EUR"), timeout=60_000
    )
