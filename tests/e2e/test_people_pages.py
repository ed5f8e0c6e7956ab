"""The Colleagues and API tokens pages, in Debian's chromium: an owner invites a colleague,
sees them join, removes them (their credentials stop working at once); an accountant makes a
token, sees it shown once, uses it and revokes it."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.browser import shot, sign_in
from tests.e2e.conftest import Hub
from tests.support.sign_in import join_firm
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


def test_an_owner_invites_and_removes_a_colleague_on_the_colleagues_page(hub: Hub, page: Page) -> None:
    owner, colleague = "kim@northwind-partners.example", "lou@northwind-partners.example"
    sign_in(page, hub, owner)
    page.get_by_role("link", name="Colleagues").click()
    people = page.get_by_role("table", name="People of the firm")
    expect(people).to_contain_text(owner)
    page.get_by_label("Work email").fill("someone@gmail.com")
    page.get_by_role("button", name="Invite").click()
    expect(page.get_by_role("alert")).to_contain_text("personal mailbox")
    page.get_by_label("Work email").fill(colleague)
    page.get_by_label("Role").select_option("admin")
    page.get_by_role("button", name="Invite").click()
    expect(page.locator("#colleagues-done")).to_have_text(f"Invitation mailed to {colleague}.")

    join_firm(hub.url, colleague, hub.client(owner).get("/api/v1/me").json()["firm_id"])
    api = hub.client(colleague)
    assert api.get("/api/v1/me").json()["role"] == "admin"
    token = api.post("/api/v1/tokens", json={"name": "laptop"}).json()["token"]
    with_token = httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {token}"}, timeout=20)
    eventually(lambda: colleague in {m["email"] for m in api.get("/api/v1/accountants").json()}, "the colleague listed")
    page.reload()
    row = people.locator("tbody tr", has_text=colleague)
    expect(row).to_contain_text("admin")
    # Nobody removes themselves: no button on one's own row.
    expect(people.locator("tbody tr", has_text=owner).get_by_role("button")).to_have_count(0)
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Remove").click()
    expect(page.locator("#colleagues-done")).to_contain_text(f"{colleague} was removed from the firm")
    expect(people).not_to_contain_text(colleague)
    assert with_token.get("/api/v1/me").status_code == 401
    # On a phone the header's one more link still fits: nothing scrolls sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    expect(people).to_be_visible()
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "colleagues-phone")


def test_an_owner_withdraws_an_invitation_on_the_colleagues_page(hub: Hub, page: Page) -> None:
    owner, mistaken = "pia@northwind-withdraw.example", "pia.namesake@northwind-withdraw.example"
    sign_in(page, hub, owner)
    page.get_by_role("link", name="Colleagues").click()
    pending = page.get_by_role("table", name="Invitations not yet accepted")
    expect(pending).to_contain_text("No invitation is waiting.")
    page.get_by_label("Work email").fill(mistaken)
    page.get_by_role("button", name="Invite").click()
    expect(page.locator("#colleagues-done")).to_have_text(f"Invitation mailed to {mistaken}.")
    row = pending.locator("tbody tr", has_text=mistaken)
    expect(row).to_contain_text("staff")
    expect(row).to_contain_text("Can join until")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name=f"Withdraw the invitation of {mistaken}").click()
    expect(page.locator("#colleagues-done")).to_have_text(f"The invitation of {mistaken} was withdrawn.")
    expect(pending).to_contain_text("No invitation is waiting.")
    assert hub.client(owner).get("/api/v1/accountants/invitations").json() == []
    # Staff have no such list: the section is not on their page.
    firm_id = hub.client(owner).get("/api/v1/me").json()["firm_id"]
    staff = "pat@northwind-withdraw.example"
    assert hub.client(owner).post("/api/v1/accountants/invitations", json={"email": staff}).status_code == 202
    join_firm(hub.url, staff, firm_id)
    staff_page = hub.client(staff).get("/colleagues")
    assert staff_page.status_code == 200 and "People of the firm" in staff_page.text
    assert "Invitations not yet accepted" not in staff_page.text


def test_an_accountant_makes_uses_and_revokes_an_api_token_on_its_page(hub: Hub, page: Page) -> None:
    sign_in(page, hub, "max@northwind-tokens.example")
    page.get_by_role("button", name="Tools").click()
    page.get_by_role("menuitem", name="API tokens").click()
    expect(page.get_by_role("table", name="Your tokens")).to_contain_text("No tokens yet.")
    page.get_by_label("Name").fill("Nightly export")
    page.get_by_role("button", name="Create token").click()
    token = page.locator("#new-token").inner_text()
    assert token.startswith("hub_pat_")
    with_token = httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {token}"}, timeout=20)
    assert with_token.get("/api/v1/dashboard").status_code == 200
    row = page.get_by_role("table", name="Your tokens").locator("tbody tr", has_text="Nightly export")
    expect(row).to_contain_text("Works until")  # 90 days unless chosen otherwise
    page.reload()
    expect(page.locator("#new-token")).to_have_count(0)  # shown once, never again
    expect(row).not_to_contain_text("never")  # its use just now
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(row).to_contain_text("Revoked")
    assert with_token.get("/api/v1/dashboard").status_code == 401
