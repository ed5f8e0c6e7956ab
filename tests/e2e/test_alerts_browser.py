"""The Alerts page and the dashboard's marker in chromium: a rule made on the page holds at
the next refresh, the dashboard marks the rows and counts the open alerts without a reload,
the Alerts page lists them, a webhook given to the rule there shows its new secret once, and
removing the rule ends them."""

from __future__ import annotations

import re
import time

from playwright.sync_api import Page, Route, expect

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
    # Nothing was sent to the new URL yet: the rule says so.
    expect(page.locator("#rules-body .webhook-state")).to_have_text("Webhook: 0 delivered.")
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


def test_an_alert_raised_while_the_page_reads_the_alerts_is_marked(page: Page, hub: Hub, sandbox: Sandbox) -> None:
    """The page reads the open alerts on each change; an alert raised while such a read is on
    its way (here every answer is held for two seconds after the hub gave it, so the read
    that the snapshot started answers without it) must still be marked, though no change
    comes after it."""
    email = "bea@slow-alerts-accounting.example"
    sign_in(page, hub, email)
    api = hub.client(email)
    connected = connect_consented_tenant(sandbox, api, name="Slowly alerted client")
    expect(page.locator("#grid-body tr[data-state=ok]")).to_have_count(len(connected.company_names), timeout=60_000)

    def held_back(route: Route) -> None:
        answer = route.fetch()
        time.sleep(2)
        route.fulfill(response=answer)

    page.route(re.compile(r"/api/v1/alerts/markers"), held_back)
    rule = {"name": "Any cash", "client_id": connected.client_id, "figure": "cash", "comparison": "below"}
    created = api.post("/api/v1/alert-rules", json={**rule, "threshold": "1000000000000"})
    assert created.status_code == 201, created.text
    assert api.post("/api/v1/refresh", json={"client_id": connected.client_id}).status_code == 202
    expect(page.locator("#grid-body .alert-marker")).to_have_count(len(connected.company_names), timeout=60_000)
    expect(page.locator("#alerts-note")).to_have_text(f"{len(connected.company_names)} open alerts")


def test_a_save_whose_answer_was_lost_and_is_sent_again_makes_one_rule(page: Page, hub: Hub) -> None:
    """The hub saved the rule but the page never got its answer (here the connection drops
    after the hub answered): saving again is the same rule, not a second one."""
    sign_in(page, hub, "noor@lost-answer-accounting.example")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Alerts").click()
    expect(page.locator("#rules-body")).to_contain_text("No rules yet")
    reached: list[int] = []

    def answer_lost(route: Route) -> None:
        if route.request.method == "POST" and not reached:
            reached.append(route.fetch().status)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route(re.compile(r"/api/v1/alert-rules$"), answer_lost)
    page.get_by_label("Name").fill("Saved once")
    page.get_by_label("Figure").select_option("cash")
    page.get_by_label("Comparison").select_option("below")
    page.get_by_label("Threshold").fill("500")
    page.get_by_role("button", name="Save rule").click()
    expect(page.locator("#alerts-error")).to_contain_text("cannot be reached")
    assert reached == [201], "the hub saved the rule"
    page.get_by_role("button", name="Save rule").click()
    expect(page.locator("#rule-status")).to_have_text("Rule saved.")
    expect(page.locator("#rules-body tr", has_text="Saved once")).to_have_count(1)
    page.reload()
    expect(page.locator("#rules-body tr", has_text="Saved once")).to_have_count(1)
