"""Firms and roles: the first sign-in creates a firm with its owner; owners and admins
invite colleagues by address; nobody joins a firm by email domain alone."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import Hub

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
    paul = hub.client("paul@litware-accounting.example").get("/api/v1/me").json()
    assert paul["firm_id"] == me["firm_id"]
    assert paul["role"] == "admin"
    staff = hub.client("paul@litware-accounting.example").post(
        "/api/v1/accountants/invitations", json={"email": "quinn@litware-accounting.example"}
    )
    assert staff.status_code == 202
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
    taken = owner.post("/api/v1/accountants/invitations", json={"email": "victor@proseware-audit.example"})
    assert taken.status_code == 409
