"""The refresh schedule in the browser: an owner sets the firm's on Manage Clients and a
client's own on its card, a schedule that cannot be kept is refused in place naming the
rule, and a staff member sees the schedule but no form."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import Sandbox
from tests.e2e.browser import shot, sign_in
from tests.e2e.conftest import Hub
from tests.support.sign_in import join_firm
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

OWNER = "sasha@schedule-page-accounting.example"
STAFF = "sid@schedule-page-accounting.example"


def _schedules(hub: Hub) -> dict[str, Any]:
    schedules: dict[str, Any] = hub.client(OWNER).get("/api/v1/refresh-schedule").json()
    return schedules


def test_an_owner_sets_the_firms_and_a_clients_schedule_in_the_page(hub: Hub, sandbox: Sandbox, page: Page) -> None:
    api = hub.client(OWNER)
    url = f"{sandbox.web_client}/cronus-sample.onmicrosoft.com/Production"
    created = api.post(
        "/api/v1/clients", json={"name": "Schedule page client", "client_url": url, "time_zone": "America/New_York"}
    )
    assert created.status_code == 202, created.text
    client_id = created.json()["client_id"]
    eventually(
        lambda: any(c["client_id"] == client_id for c in api.get("/api/v1/clients").json()["clients"]) or None,
        "the new client in the read model",
        timeout=15,
    )
    sign_in(page, hub, OWNER)
    page.goto(f"{hub.url}/clients")
    expect(page.locator("#schedule-summary")).to_contain_text("default")

    # Unknown time zone: refused in place, nothing saved.
    page.get_by_label("Refresh", exact=True).select_option("240")
    page.get_by_label("Quiet hours from").fill("22:00")
    page.get_by_label("until", exact=True).fill("06:30")
    page.get_by_role("region", name="Refresh schedule").get_by_label("Time zone").fill("Mars/Olympus_Mons")
    page.get_by_role("button", name="Save schedule").click()
    expect(page.locator("#schedule-error")).to_contain_text("time zone")
    assert _schedules(hub)["firm"] is None

    page.get_by_role("region", name="Refresh schedule").get_by_label("Time zone").fill("Europe/Amsterdam")
    page.get_by_role("button", name="Save schedule").click()
    expect(page.locator("#schedule-saved")).to_have_text("Schedule saved.")
    expect(page.locator("#schedule-summary")).to_have_text(
        "Every 4 hours. Quiet hours 22:00 to 06:30 (Europe/Amsterdam)."
    )
    firm = eventually(lambda: _schedules(hub)["firm"], "the firm's schedule in the read model", timeout=15)
    assert firm == {
        "every_minutes": 240,
        "quiet_from": "22:00:00",
        "quiet_until": "06:30:00",
        "time_zone": "Europe/Amsterdam",
    }
    # Shown as saved after a reload (from the read model, not the form's memory).
    page.reload()
    expect(page.locator("#schedule-summary")).to_contain_text("Every 4 hours")
    expect(page.get_by_label("Refresh", exact=True)).to_have_value("240")
    shot(page, "refresh-schedule")

    page.goto(f"{hub.url}/clients/{client_id}")
    expect(page.locator("#schedule-summary")).to_contain_text("follows the firm's schedule")
    # A schedule of its own starts as the firm's, with quiet hours where the client is.
    expect(page.get_by_label("Refresh", exact=True)).to_have_value("240")
    expect(page.get_by_label("Quiet hours from")).to_have_value("22:00")
    expect(page.locator("#schedule-time-zone")).to_have_value("America/New_York")
    page.get_by_label("Refresh", exact=True).select_option("")
    page.get_by_label("Quiet hours from").fill("")
    page.get_by_label("until", exact=True).fill("")
    page.get_by_role("button", name="Save schedule").click()
    expect(page.locator("#schedule-summary")).to_contain_text("Never on schedule")
    own = eventually(lambda: _schedules(hub)["clients"], "the client's own schedule", timeout=15)
    assert own[0]["client_id"] == client_id and own[0]["schedule"]["every_minutes"] is None

    page.get_by_role("button", name="Follow the firm's schedule").click()
    expect(page.locator("#schedule-summary")).to_contain_text("follows the firm's schedule")
    eventually(lambda: _schedules(hub)["clients"] == [] or None, "the client following the firm again", timeout=15)


def test_staff_see_the_schedule_but_cannot_change_it(hub: Hub, page: Page) -> None:
    owner = hub.client(OWNER)
    firm_id = owner.get("/api/v1/me").json()["firm_id"]
    assert owner.post("/api/v1/accountants/invitations", json={"email": STAFF, "role": "staff"}).status_code == 202
    join_firm(hub.url, STAFF, firm_id)
    sign_in(page, hub, STAFF)
    page.goto(f"{hub.url}/clients")
    expect(page.locator("#schedule-summary")).to_be_visible()
    expect(page.get_by_text("Only the firm's owners and admins change schedules.")).to_be_visible()
    expect(page.locator("#schedule-form")).to_have_count(0)
