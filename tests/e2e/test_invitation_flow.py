"""A client's administrator invites an accountant from the sandbox's "Invite External
Accountant" page; the email arrives; the accountant, signed in, accepts; the client lands
on the dashboard by itself. Tampered, reused and wrong-account links change nothing."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from hub_common.commands import UNASSIGNED_FIRM
from tests.conftest import Sandbox
from tests.e2e.conftest import Hub
from tests.support.connect import client_access_page, client_admin
from tests.support.events import firm_events
from tests.support.sign_in import join_firm
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


def _browser(hub: Hub, email: str) -> tuple[httpx.Client, str]:
    """A signed-in browser (dev sign-in form) and its CSRF token."""
    browser = httpx.Client(base_url=hub.url, timeout=30)
    assert browser.post("/sign-in", data={"email": email, "next": "/"}).status_code == 303
    page = browser.get("/")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf, page.text[:500]
    return browser, csrf.group(1)


def _invite(sandbox: Sandbox, tenant: dict[str, Any], email: str) -> httpx.Response:
    admin = httpx.Client(verify=sandbox.tls(), timeout=30)
    page = admin.get(tenant["invite_url"])
    assert page.status_code == 200
    companies = re.findall(r'name="company" value="([^"]+)"', page.text)
    production = [value for value in companies if value.startswith("Production/")]
    return admin.post(
        tenant["invite_url"],
        data={
            "email": email,
            "first_name": "Wendy",
            "last_name": "Woodgrove",
            "environment": "Production",
            "company": production,
            "consent": "accept",
            "welcome_text": "Welcome!",
        },
    )


def _links(hub: Hub, email: str) -> list[str]:
    """The links in the invitation mail, read from /dev/mail as the addressee (signed in)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        page = hub.client(email).get("/dev/mail")
        links = [link.replace("&amp;", "&") for link in re.findall(r"(http://\S+/invitations/accept\?\S+)", page.text)]
        if email in page.text and links:
            return links
        time.sleep(0.3)
    raise AssertionError("no invitation mail arrived")


def test_dev_mail_shows_only_the_signed_in_firms_mail(hub: Hub, sandbox: Sandbox) -> None:
    admin = httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls())
    tenant = next(t for t in admin.get("/tenants").json()["tenants"] if t["consented"])
    email = "xavier@mailbox-partners.example"
    hub.client(email).get("/api/v1/me")
    assert _invite(sandbox, tenant, email).status_code == 200
    assert _links(hub, email)
    assert httpx.get(f"{hub.url}/dev/mail", follow_redirects=False).status_code == 303, "sign in first"
    stranger = hub.client("yusuf@other-partners.example").get("/dev/mail")
    assert stranger.status_code == 200 and email not in stranger.text


def _open(browser: httpx.Client, link: str, csrf: str) -> httpx.Response:
    path = link.split("127.0.0.1", 1)[1].split("/", 1)[1]
    shown = browser.get(f"/{path}")
    assert shown.status_code == 200
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', shown.text))
    fields["csrf_token"] = csrf
    return browser.post("/invitations/accept", data=fields)


def test_an_invitation_puts_the_client_on_the_dashboard(hub: Hub, sandbox: Sandbox) -> None:
    admin = httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls())
    tenant = next(t for t in admin.get("/tenants").json()["tenants"] if not t["consented"])
    email = "wendy@woodgrove-partners.example"
    browser, csrf = _browser(hub, email)

    try:
        _accept_and_check(hub, sandbox, tenant, email, browser, csrf)
    finally:
        # The page granted consent; other tests rely on this tenant having none.
        admin.put(f"/tenants/{tenant['id']}/consent", json={"consented": False}).raise_for_status()


def _accept_and_check(
    hub: Hub, sandbox: Sandbox, tenant: dict[str, Any], email: str, browser: httpx.Client, csrf: str
) -> None:
    sent = _invite(sandbox, tenant, email)
    assert sent.status_code == 200, sent.text[:1000]
    assert "Invitation sent" in sent.text
    links = _links(hub, email)
    assert any("add=1" in link for link in links)

    # Another account cannot use it, and nothing changes.
    intruder, intruder_csrf = _browser(hub, "xavier@fabrikam-audit.example")
    wrong = _open(intruder, links[0], intruder_csrf)
    assert wrong.status_code == 403
    assert email in wrong.text
    # A tampered link is refused before any lookup.
    tampered = browser.post(
        "/invitations/accept", data={"link": links[0].split("link=")[1].split("&")[0][:-2] + "xx", "csrf_token": csrf}
    )
    assert tampered.status_code == 400

    # Each link's page says what accepting it does.
    for link, says in (
        (next(link for link in links if "add=1" in link), "puts the client on your dashboard"),
        (next(link for link in links if "add=1" not in link), "through a client card of yours"),
    ):
        page = browser.get("/" + link.split("127.0.0.1", 1)[1].split("/", 1)[1])
        assert page.status_code == 200 and says in page.text.replace("&#39;", "'"), page.text[:2000]

    accepted = _open(browser, next(link for link in links if "add=1" in link), csrf)
    assert accepted.status_code == 200, accepted.text[:1000]
    assert tenant["display_name"] in accepted.text

    deadline = time.monotonic() + 40
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = browser.get("/api/v1/dashboard").json()["rows"]
        if rows and all(row["state"] == "ok" for row in rows):
            break
        time.sleep(0.3)
    assert {row["client_name"] for row in rows} == {tenant["display_name"]}
    assert all(row["state"] == "ok" for row in rows), rows

    # A second click of the same accountant says it was done, not that nothing was changed;
    # anyone else is told the link worked once.
    again = _open(browser, links[0], csrf)
    assert again.status_code == 200, again.text[:1000]
    assert "You accepted this invitation of" in again.text and "Nothing was changed" not in again.text
    colleague_email = "walter@woodgrove-partners.example"
    firm_id = browser.get("/api/v1/me").json()["firm_id"]
    invited = hub.client(email).post("/api/v1/accountants/invitations", json={"email": colleague_email})
    assert invited.status_code == 202, invited.text
    join_firm(hub.url, colleague_email, firm_id)
    colleague, colleague_csrf = _browser(hub, colleague_email)
    reused = _open(colleague, links[0], colleague_csrf)
    assert reused.status_code == 409
    # Someone of another firm holding the link learns only whom it was for.
    outsider, outsider_csrf = _browser(hub, "mallory@fabrikam-audit.example")
    leaked = _open(outsider, links[0], outsider_csrf)
    assert leaked.status_code == 403, leaked.text[:500]
    assert "accepted" not in leaked.text and tenant["display_name"] not in leaked.text
    assert len(browser.get("/api/v1/clients").json()["clients"]) == 1


def test_staff_accept_the_access_and_only_owners_and_admins_add_the_client(hub: Hub, sandbox: Sandbox) -> None:
    """Adding a client is the owners' and admins' (the roles table): a staff accountant the
    client invited may accept the firm's access, but the link that also adds the client does
    not add it for them (else any staff member could put a tenant of their own on the
    firm's dashboard), and refusing it spends nothing."""
    admin = httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls())
    tenant = next(t for t in admin.get("/tenants").json()["tenants"] if not t["consented"])
    owner = hub.client("olga@staffed-partners.example")
    firm_id = owner.get("/api/v1/me").json()["firm_id"]
    email = "sven@staffed-partners.example"
    invited = owner.post("/api/v1/accountants/invitations", json={"email": email, "role": "staff"})
    assert invited.status_code == 202, invited.text
    join_firm(hub.url, email, firm_id)
    browser, csrf = _browser(hub, email)
    try:
        assert _invite(sandbox, tenant, email).status_code == 200
        links = _links(hub, email)
        adding = next(link for link in links if "add=1" in link)
        page = browser.get("/" + adding.split("127.0.0.1", 1)[1].split("/", 1)[1])
        assert page.status_code == 200 and "Accept the access only" in page.text, page.text[:2000]
        token = adding.split("link=")[1].split("&")[0]
        forced = browser.post("/invitations/accept", data={"link": token, "add": "1", "csrf_token": csrf})
        assert forced.status_code == 403 and "owners and admins" in forced.text.replace("&#39;", "'")
        assert owner.get("/api/v1/clients").json()["clients"] == []

        accepted = _open(browser, adding, csrf)  # the page's own form: the access alone
        assert accepted.status_code == 200, accepted.text[:1000]
        assert "gave your firm access" in accepted.text
        time.sleep(1)  # a card added by the acceptance would have reached the read model
        assert owner.get("/api/v1/clients").json()["clients"] == []
    finally:
        admin.put(f"/tenants/{tenant['id']}/consent", json={"consented": False}).raise_for_status()


def test_the_invitation_api_needs_a_tenant_administrator(hub: Hub) -> None:
    body = {
        "accountant_email": "x@y.example",
        "accountant_name": "X",
        "environment": "Production",
        "companies": ["A"],
        "client_name": "Evil",
    }
    assert httpx.post(f"{hub.url}/api/v1/client-invitations", json=body).status_code == 401
    forged = httpx.post(f"{hub.url}/api/v1/client-invitations", json=body, headers={"Authorization": "Bearer a.b.c"})
    assert forged.status_code == 401


def test_access_the_client_took_back_is_not_given_again_by_an_older_invitation(hub: Hub, sandbox: Sandbox) -> None:
    """The client withdraws a firm's access: an invitation it had sent that firm before no
    longer lets the firm in (it would have silently undone the withdrawal)."""
    admin = httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls())
    tenant = next(t for t in admin.get("/tenants").json()["tenants"] if not t["consented"])
    email = "ursula@takenback-partners.example"
    browser, csrf = _browser(hub, email)
    try:
        assert _invite(sandbox, tenant, email).status_code == 200
        first = _links(hub, email)
        assert _open(browser, next(link for link in first if "add=1" in link), csrf).status_code == 200

        def clients() -> list[dict[str, Any]]:
            listed: list[dict[str, Any]] = browser.get("/api/v1/clients").json()["clients"]
            return listed

        def access_is(state: str) -> bool:
            return bool(clients()) and all(c["access"]["state"] == state for c in clients())

        _until(lambda: access_is("granted"))
        # A second invitation, raised while the firm has access, to be accepted later.
        assert _invite(sandbox, tenant, email).status_code == 200

        def newer_links() -> list[str]:
            return [link for link in _links(hub, email) if link not in first]

        _until(lambda: bool(newer_links()))
        second = newer_links()

        firm_id = browser.get("/api/v1/me").json()["firm_id"]
        person, _ = client_access_page(hub.url, sandbox, client_admin(tenant["domain"]))
        withdrawn = person.post("/client-access/withdraw", data={"firm_id": firm_id}, follow_redirects=True)
        assert withdrawn.status_code == 200 and "Access withdrawn" in withdrawn.text
        _until(lambda: access_is("revoked"))

        late = _open(browser, next(link for link in second if "add=1" in link), csrf)
        assert late.status_code == 409, late.text[:1000]
        assert "access to" in late.text and "was removed on" in late.text, late.text[-1500:]
        # The link accepted before, clicked again, does not say all is well either.
        again = _open(browser, next(link for link in first if "add=1" in link), csrf)
        assert again.status_code == 409, again.text[:1000]
        assert "was removed on" in again.text and "nothing more to do" not in again.text
        time.sleep(2)  # what the registry would do with an acceptance has had time to happen
        assert access_is("revoked") and len(clients()) == 1
    finally:
        admin.put(f"/tenants/{tenant['id']}/consent", json={"consented": False}).raise_for_status()


def test_the_add_link_after_the_access_alone_was_accepted_says_the_client_is_still_to_add(
    hub: Hub, sandbox: Sandbox
) -> None:
    admin = httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls())
    tenant = next(t for t in admin.get("/tenants").json()["tenants"] if not t["consented"])
    email = "zack@accessonly-partners.example"
    browser, csrf = _browser(hub, email)
    try:
        assert _invite(sandbox, tenant, email).status_code == 200
        links = _links(hub, email)
        accepted = _open(browser, next(link for link in links if "add=1" not in link), csrf)
        assert accepted.status_code == 200, accepted.text[:1000]
        adding = _open(browser, next(link for link in links if "add=1" in link), csrf)
        assert adding.status_code == 200, adding.text[:1000]
        assert "for your firm" in adding.text and "access only" in adding.text, adding.text[-1500:]
        assert browser.get("/api/v1/clients").json()["clients"] == []
    finally:
        admin.put(f"/tenants/{tenant['id']}/consent", json={"consented": False}).raise_for_status()


def test_the_client_withdraws_an_invitation_nobody_accepted_and_its_links_stop_working(
    hub: Hub, sandbox: Sandbox, nats_url: str
) -> None:
    """Invited by mistake: someone of the client's organisation sees the invitation on
    /client-access and withdraws it; the accountant's link is then refused, saying so, and
    someone of another organisation can neither see nor withdraw it."""
    admin = httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls())
    tenants = admin.get("/tenants").json()["tenants"]
    tenant = next(t for t in tenants if not t["consented"])
    other = next(t for t in tenants if t["domain"] != tenant["domain"])
    email = "yuri@mistaken-partners.example"
    browser, csrf = _browser(hub, email)
    try:
        assert _invite(sandbox, tenant, email).status_code == 200
        links = _links(hub, email)
        person, page = client_access_page(hub.url, sandbox, client_admin(tenant["domain"]))
        assert page.status_code == 200 and email in page.text, page.text[-2000:]
        invitation_id = re.search(r'name="invitation_id" value="([^"]+)"', page.text)
        assert invitation_id, page.text[-2000:]

        # Another organisation's person sees nothing of it, and cannot withdraw it by its id.
        stranger, theirs = client_access_page(hub.url, sandbox, client_admin(other["domain"]))
        assert email not in theirs.text
        refused = stranger.post("/client-access/invitations/withdraw", data={"invitation_id": invitation_id.group(1)})
        assert refused.status_code == 404 and "no such invitation" in refused.text

        withdrawn = person.post(
            "/client-access/invitations/withdraw", data={"invitation_id": invitation_id.group(1)}, follow_redirects=True
        )
        assert withdrawn.status_code == 200 and "Invitation withdrawn" in withdrawn.text
        assert email not in withdrawn.text
        again = person.post("/client-access/invitations/withdraw", data={"invitation_id": invitation_id.group(1)})
        assert again.status_code == 409 and "accepted or withdrawn already" in again.text.replace("&#39;", "'")
        assert person.post("/client-access/invitations/withdraw", data={"invitation_id": "nope"}).status_code == 400

        late = _open(browser, next(link for link in links if "add=1" in link), csrf)
        assert late.status_code == 409, late.text[:1000]
        assert "withdrew this invitation" in late.text
        assert browser.get("/api/v1/clients").json()["clients"] == []
        withdrawals = eventually(
            lambda: [
                e
                for e in firm_events(nats_url, UNASSIGNED_FIRM, "InvitationWithdrawn")
                if str(getattr(e.data, "invitation_id", "")) == invitation_id.group(1)
            ],
            "the withdrawal in the audit log",
        )
        assert withdrawals[0].actor.kind == "client_admin"
        assert withdrawals[0].actor.display_name == client_admin(tenant["domain"])
    finally:
        admin.put(f"/tenants/{tenant['id']}/consent", json={"consented": False}).raise_for_status()


def _until(done: Any, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.3)
