"""Firms and roles: the first sign-in creates a firm with its owner; owners and admins
invite colleagues by address; nobody joins a firm by email domain alone."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

import httpx
import pytest

from hub_common.dev_mail import read_mailbox
from hub_common.events import AccountantRemoved
from tests.conftest import Sandbox
from tests.e2e.browser import consented_tenant
from tests.e2e.conftest import Hub
from tests.support.events import firm_events
from tests.support.sign_in import choose_firm, first_sign_in, join_firm
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


def _members(hub: Hub, email: str, expected: set[str]) -> set[str]:
    """The firm's members once the read model holds at least ``expected`` (or after 20 s)."""
    deadline = time.monotonic() + 20
    emails: set[str] = set()
    while time.monotonic() < deadline:
        emails = {m["email"] for m in hub.client(email).get("/api/v1/accountants").json()}
        if expected <= emails:
            return emails
        time.sleep(0.2)
    return emails


def test_an_invited_colleague_joins_the_firm_with_the_role(hub: Hub) -> None:
    owner = hub.client("olivia@litware-accounting.example")
    me = owner.get("/api/v1/me").json()
    assert me["role"] == "owner"
    invited = owner.post(
        "/api/v1/accountants/invitations", json={"email": "Paul@Litware-Accounting.example", "role": "admin"}
    )
    assert invited.status_code == 202, invited.text
    # Nobody joins silently: a first sign-in with an invitation waiting must choose.
    assert hub.client("paul@litware-accounting.example").get("/api/v1/me").status_code == 409
    join_firm(hub.url, "paul@litware-accounting.example", me["firm_id"])
    paul = hub.client("paul@litware-accounting.example").get("/api/v1/me").json()
    assert paul["firm_id"] == me["firm_id"]
    assert paul["role"] == "admin"
    staff = hub.client("paul@litware-accounting.example").post(
        "/api/v1/accountants/invitations", json={"email": "quinn@litware-accounting.example"}
    )
    assert staff.status_code == 202
    join_firm(hub.url, "quinn@litware-accounting.example", me["firm_id"])
    quinn = hub.client("quinn@litware-accounting.example")
    assert quinn.get("/api/v1/me").json()["role"] == "staff"
    refused = quinn.post("/api/v1/accountants/invitations", json={"email": "rita@litware-accounting.example"})
    assert refused.status_code == 403
    expected = {"olivia@litware-accounting.example", "paul@litware-accounting.example"}
    assert expected <= _members(hub, "olivia@litware-accounting.example", expected)


def test_the_same_domain_alone_does_not_join_a_firm(hub: Hub) -> None:
    first = hub.client("sam@tailwind-accounting.example").get("/api/v1/me").json()
    second = hub.client("tina@tailwind-accounting.example").get("/api/v1/me").json()
    assert first["firm_id"] != second["firm_id"]
    assert second["role"] == "owner"


def test_bad_invitations_are_refused(hub: Hub) -> None:
    owner = hub.client("uma@proseware-accounting.example")
    assert owner.post("/api/v1/accountants/invitations", json={"email": "friend@gmail.com"}).status_code == 422
    assert owner.post("/api/v1/accountants/invitations", json={"email": "not-an-address"}).status_code == 422
    assert (
        owner.post("/api/v1/accountants/invitations", json={"email": "x@y.example", "role": "owner"}).status_code == 422
    )
    existing = hub.client("victor@proseware-audit.example")
    existing.get("/api/v1/me")
    # Whether an address has an account elsewhere is not the inviter's to learn.
    elsewhere = owner.post("/api/v1/accountants/invitations", json={"email": "victor@proseware-audit.example"})
    assert elsewhere.status_code == 202, elsewhere.text
    stranger = owner.post("/api/v1/accountants/invitations", json={"email": "walt@proseware-audit.example"})
    assert stranger.status_code == 202
    assert elsewhere.json() | {"email": ""} == stranger.json() | {"email": ""}
    assert (
        hub.client("victor@proseware-audit.example").get("/api/v1/me").json()["firm_id"]
        != (owner.get("/api/v1/me").json()["firm_id"])
    )
    member = owner.post("/api/v1/accountants/invitations", json={"email": "uma@proseware-accounting.example"})
    assert member.status_code == 409


def test_a_person_invited_by_two_firms_chooses_on_a_page_naming_both(hub: Hub) -> None:
    first = hub.client("xena@fourthcoffee-accounting.example")
    second = hub.client("yves@wideworld-accounting.example")
    first_firm = first.get("/api/v1/me").json()["firm_id"]
    second_firm = second.get("/api/v1/me").json()["firm_id"]
    invitee = "zoe@consultants.example"
    assert second.post("/api/v1/accountants/invitations", json={"email": invitee}).status_code == 202
    assert first.post("/api/v1/accountants/invitations", json={"email": invitee}).status_code == 202

    browser = first_sign_in(hub.url, invitee)
    page = browser.get("/sign-in/choose-firm")
    assert page.status_code == 200
    assert first_firm in page.text and second_firm in page.text
    assert re.search(r"Fourthcoffee", page.text, re.IGNORECASE) and re.search(r"Wideworld", page.text, re.IGNORECASE)
    # Each inviter by their verified address, apart from the name their own directory gives
    # them (which may look like another address).
    for inviter in ("xena@fourthcoffee-accounting.example", "yves@wideworld-accounting.example"):
        assert f'<bdi class="address">{inviter}</bdi>' in page.text, page.text[-2000:]
    # The newer invitation does not win by itself: the person chose the older one.
    assert choose_firm(browser, second_firm).status_code == 200
    assert hub.client(invitee).get("/api/v1/me").json()["firm_id"] == second_firm


def test_a_first_sign_in_may_decline_every_invitation(hub: Hub) -> None:
    inviter = hub.client("abe@adatum-accounting.example")
    inviter_firm = inviter.get("/api/v1/me").json()["firm_id"]
    assert (
        inviter.post("/api/v1/accountants/invitations", json={"email": "bea@northwind-audit.example"}).status_code
        == 202
    )
    browser = first_sign_in(hub.url, "bea@northwind-audit.example")
    assert choose_firm(browser, "own").status_code == 200
    me = hub.client("bea@northwind-audit.example").get("/api/v1/me").json()
    assert me["firm_id"] != inviter_firm and me["role"] == "owner"
    # A firm id that did not invite the address is refused, not joined.
    other = first_sign_in(hub.url, "cy@northwind-audit.example")
    assert choose_firm(other, inviter_firm).status_code in (400, 404)


def test_an_address_is_mailed_once_a_day_and_a_firm_within_its_daily_allowance(hub: Hub) -> None:
    owner = hub.client("nora@fourthcoffee-accounting.example")
    invitee = "omar@fourthcoffee-accounting.example"
    assert owner.post("/api/v1/accountants/invitations", json={"email": invitee}).status_code == 202
    mailed = eventually(lambda: [m for m in read_mailbox(hub.mail_dir) if invitee in m.to], "the invitation's mail")
    again = owner.post("/api/v1/accountants/invitations", json={"email": invitee, "role": "admin"})
    assert again.status_code == 200, again.text[:300]
    assert again.json()["mail_sent"] is False and again.json()["role"] == "admin"
    assert "not sent again" in again.json()["message"]
    time.sleep(1)  # a second mail, had one been sent, would be in the sink by now
    assert [m for m in read_mailbox(hub.mail_dir) if invitee in m.to] == mailed
    # Each new address is mailed, up to the firm's daily allowance (50 by default).
    for n in range(49):
        invited = owner.post("/api/v1/accountants/invitations", json={"email": f"p{n}@fourthcoffee-accounting.example"})
        assert invited.status_code == 202, (n, invited.text[:300])
    beyond = owner.post("/api/v1/accountants/invitations", json={"email": "last@fourthcoffee-accounting.example"})
    assert beyond.status_code == 429, beyond.text[:300]
    assert "50 colleagues in the last 24 hours" in beyond.json()["detail"]["message"]
    # Another firm's allowance is its own.
    other = hub.client("rosa@fourthcoffee-audit.example")
    assert other.post("/api/v1/accountants/invitations", json={"email": invitee}).status_code == 202


def test_a_role_given_by_mistake_is_corrected_at_once_without_a_second_mail(hub: Hub, nats_url: str) -> None:
    owner = hub.client("ivan@margies-accounting.example")
    me = owner.get("/api/v1/me").json()
    firm_id = me["firm_id"]
    invitee = "jade@margies-accounting.example"
    first = owner.post("/api/v1/accountants/invitations", json={"email": invitee, "role": "admin"})
    assert first.status_code == 202, first.text[:300]
    mailed = eventually(lambda: [m for m in read_mailbox(hub.mail_dir) if invitee in m.to], "the invitation's mail")
    corrected = owner.post("/api/v1/accountants/invitations", json={"email": invitee, "role": "staff"})
    assert corrected.status_code == 200, corrected.text[:300]
    assert corrected.json()["mail_sent"] is False and corrected.json()["role"] == "staff"
    # The correction is in the audit log, by whom and to which role, as an event nobody mails on.
    changed = eventually(
        lambda: firm_events(nats_url, uuid.UUID(firm_id), "ColleagueInvitationChanged"), "the change in HUB_EVENTS"
    )
    assert [(event.data.model_dump(mode="json"), event.actor.id) for event in changed] == [
        ({"email": invitee, "role": "staff", "changed_by": me["accountant_id"]}, me["accountant_id"])
    ]
    invited = firm_events(nats_url, uuid.UUID(firm_id), "ColleagueInvited")
    assert [event.data.model_dump(mode="json")["role"] for event in invited] == ["admin"]
    # The same role again changes nothing, so it is no event either.
    again = owner.post("/api/v1/accountants/invitations", json={"email": invitee, "role": "staff"})
    assert again.status_code == 200, again.text[:300]
    time.sleep(1)  # a second mail or event, had one been sent, would be there by now
    assert [m for m in read_mailbox(hub.mail_dir) if invitee in m.to] == mailed
    assert len(firm_events(nats_url, uuid.UUID(firm_id), "ColleagueInvitationChanged")) == 1
    join_firm(hub.url, invitee, firm_id)
    assert hub.client(invitee).get("/api/v1/me").json()["role"] == "staff"


def test_an_address_is_mailed_by_a_few_firms_a_day_at_most(hub: Hub) -> None:
    """Anyone can start a firm, so firms made for it must not each mail one address daily."""
    victim = "vera@contoso-pharma.example"
    inviters = [hub.client(f"owner@spam-firm-{n}.example") for n in range(4)]
    for inviter in inviters[:3]:
        invited = inviter.post("/api/v1/accountants/invitations", json={"email": victim})
        assert invited.status_code == 202, invited.text[:300]
    refused = inviters[3].post("/api/v1/accountants/invitations", json={"email": victim})
    assert refused.status_code == 429, refused.text[:300]
    detail = refused.json()["detail"]
    assert detail["field"] == "email"
    assert "as many invitations in the last 24 hours as the hub sends one address" in detail["message"]
    assert "spam-firm" not in detail["message"], "which firms invited the address is not the caller's to know"

    def mails() -> int:
        return len([m for m in read_mailbox(hub.mail_dir) if victim in m.to])

    eventually(lambda: mails() >= 3, "the three firms' mails")
    time.sleep(1)  # a fourth mail, had one been sent, would be in the sink by now
    assert mails() == 3
    # A firm that did mail it may still correct the role; another address is mailed as usual.
    corrected = inviters[0].post("/api/v1/accountants/invitations", json={"email": victim, "role": "admin"})
    assert corrected.status_code == 200, corrected.text[:300]
    assert (
        inviters[3].post("/api/v1/accountants/invitations", json={"email": "wes@contoso-pharma.example"}).status_code
        == 202
    )


ALERT_RULE = {"name": "Low cash", "figure": "cash", "comparison": "below", "threshold": "1000"}


def test_an_owner_removes_a_colleague_who_left(hub: Hub, nats_url: str, sandbox: Sandbox) -> None:
    """Nothing of the firm's stays reachable to someone removed: sessions, API tokens and
    open live streams end when the removal answers; their alert rules go, their clients are
    assigned to nobody, the audit log says who removed them; only a new invitation brings
    them back, and their old credentials stay dead."""
    owner_email, admin_email, leaver_email = (f"{name}@lucerne-accounting.example" for name in ("ada", "ben", "cleo"))
    owner = hub.client(owner_email)
    me = owner.get("/api/v1/me").json()
    firm_id = me["firm_id"]
    for email, role in ((admin_email, "admin"), (leaver_email, "staff")):
        assert owner.post("/api/v1/accountants/invitations", json={"email": email, "role": role}).status_code == 202
        join_firm(hub.url, email, firm_id)
    admin, leaver = hub.client(admin_email), hub.client(leaver_email)
    leaver_id = leaver.get("/api/v1/me").json()["accountant_id"]
    browser = first_sign_in(hub.url, leaver_email)
    assert browser.get("/api/v1/me").json()["accountant_id"] == leaver_id
    token = leaver.post("/api/v1/tokens", json={"name": "home laptop"}).json()["token"]
    with_token = httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {token}"}, timeout=20)
    assert with_token.get("/api/v1/dashboard").status_code == 200
    # A token makes no tokens: revoking a leaked one must end what it can do.
    minted = with_token.post("/api/v1/tokens", json={"name": "spare key"})
    assert minted.status_code == 403, minted.text
    # Nor an admin's token a colleague: who joined through it would keep the firm's data
    # once the leaked token is revoked.
    admin_token = admin.post("/api/v1/tokens", json={"name": "scripts"}).json()["token"]
    with httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=20) as scripts:
        assert scripts.get("/api/v1/accountants/invitations").status_code == 200
        invited = scripts.post(
            "/api/v1/accountants/invitations", json={"email": "mallory@lucerne-accounting.example", "role": "admin"}
        )
        assert invited.status_code == 403, invited.text
        assert "signed in" in invited.json()["detail"]
    assert leaver.post("/api/v1/alert-rules", json=ALERT_RULE).status_code == 201
    production = next(e for e in consented_tenant(sandbox)["environments"] if e["name"] == "Production")
    card = {"name": "Lucerne client", "client_url": production["client_url"], "assigned_accountant_id": leaver_id}
    added = owner.post("/api/v1/clients", json=card)
    assert added.status_code == 202, added.text
    client_id = added.json()["client_id"]

    # Who may remove whom.
    admin_id = admin.get("/api/v1/me").json()["accountant_id"]
    assert leaver.delete(f"/api/v1/accountants/{admin_id}").status_code == 403
    assert admin.delete(f"/api/v1/accountants/{me['accountant_id']}").status_code == 403
    assert owner.delete(f"/api/v1/accountants/{me['accountant_id']}").status_code == 409
    assert owner.delete(f"/api/v1/accountants/{uuid.uuid4()}").status_code == 404
    assert owner.delete("/api/v1/accountants/not-an-id").status_code == 422
    stranger = hub.client("dora@lucerne-audit.example").get("/api/v1/me").json()["accountant_id"]
    assert owner.delete(f"/api/v1/accountants/{stranger}").status_code == 404
    assert hub.client("dora@lucerne-audit.example").get("/api/v1/me").status_code == 200

    with (
        httpx.Client(base_url=hub.url, headers=with_token.headers, timeout=httpx.Timeout(10, read=60)) as live,
        live.stream("GET", "/api/v1/live") as stream,
    ):
        lines = stream.iter_lines()
        assert any(line.startswith("event: ready") for line in lines)
        removed = admin.delete(f"/api/v1/accountants/{leaver_id}")
        removed_at = time.monotonic()
        assert removed.status_code == 200, removed.text
        assert removed.json() == {
            "accountant_id": leaver_id,
            "email": leaver_email,
            "alert_rules_removed": 1,
            "clients_unassigned": 1,
        }
        # When the removal answers, their session and token are already refused.
        assert browser.get("/api/v1/me").status_code == 401
        assert with_token.get("/api/v1/dashboard").status_code == 401
        for _ in lines:
            assert time.monotonic() - removed_at < 5, "the stream outlived its accountant's removal"
    assert admin.delete(f"/api/v1/accountants/{leaver_id}").status_code == 404

    def settled() -> bool:
        # (The card itself may not be in the read model yet: it was added moments before.)
        cards = [c["card"] for c in owner.get("/api/v1/clients").json()["clients"] if c["client_id"] == client_id]
        members = {m["email"] for m in owner.get("/api/v1/accountants").json()}
        return bool(cards) and cards[0].get("assigned_accountant_id") is None and leaver_email not in members

    eventually(settled, "the read model showing the removal", timeout=20)
    assert [r["name"] for r in owner.get("/api/v1/alert-rules").json()["rules"]] == []
    # A new sign-in is refused with a sentence saying why, and so is the dev token.
    again = httpx.post(f"{hub.url}/sign-in", data={"email": leaver_email, "next": "/"})
    assert "removed your account; ask them to invite you again" in again.text, again.text[:500]
    assert "hub_session" not in again.headers.get("set-cookie", "")
    assert leaver.get("/api/v1/me").status_code == 403
    [event] = firm_events(nats_url, uuid.UUID(firm_id), "AccountantRemoved")
    assert isinstance(event.data, AccountantRemoved) and event.actor.id == admin_id
    assert (event.data.accountant_id, event.data.removed_by) == (uuid.UUID(leaver_id), uuid.UUID(admin_id))

    # Invited again, they come back with the new role; what they held before stays dead.
    assert (
        owner.post("/api/v1/accountants/invitations", json={"email": leaver_email, "role": "admin"}).status_code == 202
    )
    join_firm(hub.url, leaver_email, firm_id)
    back = hub.client(leaver_email).get("/api/v1/me").json()
    assert (back["accountant_id"], back["role"]) == (leaver_id, "admin")
    assert with_token.get("/api/v1/dashboard").status_code == 401
    assert browser.get("/api/v1/me").status_code == 401
    eventually(
        lambda: leaver_email in {m["email"] for m in owner.get("/api/v1/accountants").json()},
        "the colleague who came back listed",
        timeout=20,
    )


def _admin_removed_after_inviting(
    hub: Hub,
    owner_email: str,
    admin_email: str,
    backdoor: str,
    before_leaving: Callable[[httpx.Client], None] = lambda admin: None,
) -> tuple[httpx.Client, str, str]:
    """An owner's firm invites an admin, who (after ``before_leaving``) invites ``backdoor``
    as admin and is then removed: the owner, the firm and the removed admin's id."""
    owner = hub.client(owner_email)
    firm_id: str = owner.get("/api/v1/me").json()["firm_id"]
    assert (
        owner.post("/api/v1/accountants/invitations", json={"email": admin_email, "role": "admin"}).status_code == 202
    )
    join_firm(hub.url, admin_email, firm_id)
    admin = hub.client(admin_email)
    admin_id: str = admin.get("/api/v1/me").json()["accountant_id"]
    before_leaving(admin)
    assert admin.post("/api/v1/accountants/invitations", json={"email": backdoor, "role": "admin"}).status_code == 202
    assert owner.delete(f"/api/v1/accountants/{admin_id}").status_code == 200
    return owner, firm_id, admin_id


def test_a_removed_admin_cannot_come_back_through_an_invitation_of_their_own(hub: Hub) -> None:
    """Before leaving, an admin invites an address of their own as admin: once they are
    removed, that invitation counts no more (an owner inviting it again does). Joining
    another firm later, they see none of the old firm's API tokens."""
    admin_email, backdoor = "hal@contoso-partners.example", "hal@hal-consulting.example"

    def before_leaving(admin: httpx.Client) -> None:
        assert admin.post("/api/v1/tokens", json={"name": "old firm's script"}).status_code == 201
        assert admin.post("/api/v1/views", json={"name": "Month end", "query": {}}).status_code == 201

    _, firm_id, admin_id = _admin_removed_after_inviting(
        hub, "gus@contoso-partners.example", admin_email, backdoor, before_leaving
    )

    # No invitation is waiting for the address: its first sign-in starts a firm of its own.
    elsewhere = hub.client(backdoor).get("/api/v1/me").json()
    assert elsewhere["firm_id"] != firm_id and elsewhere["role"] == "owner"

    # Invited by another firm, the removed admin joins it and finds nothing of the old one.
    other = hub.client("ivy@fabrikam-partners.example")
    other_firm = other.get("/api/v1/me").json()["firm_id"]
    assert other.post("/api/v1/accountants/invitations", json={"email": admin_email}).status_code == 202
    join_firm(hub.url, admin_email, other_firm)
    again = hub.client(admin_email)
    # The gateway's read model learns of the join a moment after the registry made it.
    eventually(lambda: again.get("/api/v1/me").json().get("firm_id") == other_firm, "the join read", timeout=20)
    assert again.get("/api/v1/me").json() | {"display_name": ""} == {
        "accountant_id": admin_id,
        "firm_id": other_firm,
        "email": admin_email,
        "display_name": "",
        "role": "staff",
    }
    assert again.get("/api/v1/tokens").json() == []
    # Nor its saved views; a view of the same name is theirs to make in the new firm.
    assert again.get("/api/v1/views").json() == []
    assert again.post("/api/v1/views", json={"name": "Month end", "query": {}}).status_code == 201
    assert [view["name"] for view in again.get("/api/v1/views").json()] == ["Month end"]


def test_a_removed_admins_invitations_stay_dead_when_the_firm_invites_them_again(hub: Hub) -> None:
    """An admin invites an address of their own as admin and is removed; the firm later
    invites them back as staff. The old invitation stays withdrawn: their second address
    does not join the firm as an admin."""
    admin_email, backdoor = "max@rejoin-partners.example", "max@max-consulting.example"
    owner, firm_id, _ = _admin_removed_after_inviting(hub, "lou@rejoin-partners.example", admin_email, backdoor)
    # The firm's list no longer shows it as waiting.
    eventually(
        lambda: backdoor not in {i["email"] for i in owner.get("/api/v1/accountants/invitations").json()},
        "the removed admin's invitation withdrawn in the read model",
        timeout=20,
    )

    # Invited back as staff, they join; the invitation they sent before stays dead.
    assert owner.post("/api/v1/accountants/invitations", json={"email": admin_email}).status_code == 202
    join_firm(hub.url, admin_email, firm_id)
    back = hub.client(admin_email)
    eventually(lambda: back.get("/api/v1/me").json().get("role") == "staff", "the rejoin as staff read", timeout=20)
    elsewhere = hub.client(backdoor).get("/api/v1/me").json()
    assert elsewhere["firm_id"] != firm_id and elsewhere["role"] == "owner"


def test_an_owner_lists_and_withdraws_an_invitation_sent_to_the_wrong_address(hub: Hub, nats_url: str) -> None:
    owner = hub.client("ken@withdraw-partners.example")
    firm_id = owner.get("/api/v1/me").json()["firm_id"]
    wrong, right = "ken.namesake@withdraw-partners.example", "kenneth@withdraw-partners.example"
    assert owner.post("/api/v1/accountants/invitations", json={"email": wrong, "role": "admin"}).status_code == 202
    assert owner.post("/api/v1/accountants/invitations", json={"email": right}).status_code == 202
    listed = owner.get("/api/v1/accountants/invitations")
    assert listed.status_code == 200, listed.text
    by_email = {invitation["email"]: invitation for invitation in listed.json()}
    assert set(by_email) == {wrong, right}
    assert by_email[wrong]["role"] == "admin" and by_email[wrong]["expired"] is False
    assert by_email[wrong]["invited_by"] == owner.get("/api/v1/me").json()["accountant_id"]

    withdrawn = owner.delete(f"/api/v1/accountants/invitations/{by_email[wrong]['invitation_id']}")
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json() == {"invitation_id": by_email[wrong]["invitation_id"], "email": wrong}
    assert [invitation["email"] for invitation in owner.get("/api/v1/accountants/invitations").json()] == [right]
    again = owner.delete(f"/api/v1/accountants/invitations/{by_email[wrong]['invitation_id']}")
    assert again.status_code == 404 and "accepted or withdrawn" in again.json()["detail"]["message"]
    assert owner.delete("/api/v1/accountants/invitations/not-an-id").status_code == 422
    eventually(
        lambda: firm_events(nats_url, uuid.UUID(firm_id), "ColleagueInvitationWithdrawn"),
        "the withdrawal in HUB_EVENTS",
    )

    # The wrong address signs in with nothing waiting: a firm of its own, no choice to make.
    namesake = hub.client(wrong).get("/api/v1/me").json()
    assert namesake["firm_id"] != firm_id and namesake["role"] == "owner"
    join_firm(hub.url, right, firm_id)
    assert hub.client(right).get("/api/v1/me").json()["firm_id"] == firm_id
    assert owner.get("/api/v1/accountants/invitations").json() == []
