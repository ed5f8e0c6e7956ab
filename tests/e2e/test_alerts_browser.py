"""The Alerts page and the dashboard's marker in chromium: a rule made on the page holds at
the next refresh, the dashboard marks the rows and counts the open alerts without a reload,
the Alerts page lists them, a webhook given to the rule there shows its new secret once, and
removing the rule ends them."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.conftest import Sandbox
from tests.e2e.browser import connect_consented_tenant, shot, sign_in
from tests.e2e.conftest import Hub

EMAIL = "avery@alert-page-accounting.example"


def test_a_rule_made_on_the_alerts_page_marks_the_dashboard_live(page: Page, hub: Hub, sandbox: Sandbox) -> None:
    sign_in(page, hub, EMAIL)
    connect_consented_tenant(sandbox, hub.client(EMAIL), name="Alerted client")
    expect(page.locator("#grid-body tr[data-state=ok]").first).to_be_visible(timeout=60_000)
    expect(page.locator("#alerts-note")).to_be_hidden()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Alerts").click()
    expect(page).to_have_url(re.compile(r"/alerts$"))
    expect(page.locator("#alerts-body")).to_contain_text("No open alerts")
    page.get_by_label("Name").fill("Any cash at all")
    page.get_by_label("Figure").select_option("cash")
    page.get_by_label("Comparison").select_option("below")
    page.get_by_label("Threshold").fill("1000000000000")
    page.get_by_role("button", name="Save rule").click()
    expect(page.locator("#rule-status")).to_have_text("Rule saved.")
    expect(page.locator("#rules-body")).to_contain_text("Any cash at all")
    expect(page.locator("#rules-body")).to_contain_text("All clients")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    expect(page.locator("#grid-body tr[data-state=ok]").first).to_be_visible()
    rows = page.locator("#grid-body tr[data-state=ok]").count()
    page.locator("#summary-menu").click()
    page.locator("#refresh-all").click()
    # The rule holds for every company at the refresh: each row is marked, live.
    expect(page.locator("#grid-body .alert-marker")).to_have_count(rows, timeout=60_000)
    expect(page.locator("#alerts-note")).to_have_text(re.compile(rf"^{rows} open alerts?$"))
    # A rule's name is quoted where the marker lists it: a name may hold the list's comma.
    expect(page.locator("#grid-body .alert-marker").first).to_have_attribute("title", "1 open alert: “Any cash at all”")
    shot(page, "dashboard-alerts")

    page.locator("#alerts-note a").click()
    expect(page).to_have_url(re.compile(r"/alerts$"))
    expect(page.locator("#alerts-body tr[data-open=true]")).to_have_count(rows)
    expect(page.locator("#rules-body")).to_contain_text("Any cash at all")
    shot(page, "alerts")
    # A new webhook URL comes with a new signing secret, shown here once.
    page.once("dialog", lambda dialog: dialog.accept("http://127.0.0.1:9/alert-hook"))
    page.get_by_role("button", name="Change the webhook of Any cash at all").click()
    expect(page.locator("#webhook-secret")).to_have_text(re.compile(r"^whsec_"))
    expect(page.locator("#rules-body")).to_contain_text("webhook")
    # The same receiver, a new secret (the old one leaked): shown once, in its place.
    first_secret = page.locator("#webhook-secret").inner_text()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Give the webhook of Any cash at all a new signing secret").click()
    expect(page.locator("#webhook-secret")).not_to_have_text(first_secret)
    expect(page.locator("#webhook-secret")).to_have_text(re.compile(r"^whsec_"))
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Remove rule Any cash at all").click()
    expect(page.locator("#rules-body")).to_contain_text("No rules yet")
    expect(page.locator("#alerts-body")).to_contain_text("No open alerts", timeout=20_000)
