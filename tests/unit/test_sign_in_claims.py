"""Which address an accountant's Entra sign-in proves: the email claim only where Entra
verified its domain, else the sign-in name; guests and tokens without ids prove nobody."""

from __future__ import annotations

import uuid

import pytest

from hub_gateway.dependencies import EntraIdentity, signed_in_identity

TENANT, USER = "3e927542-b688-5b57-9ec6-8896688ef271", "0a148a79-2636-5370-94fb-c55ed1d4b65c"


@pytest.mark.parametrize(
    ("claims", "address"),
    [
        # The email claim only with a verified domain; else the sign-in name (UPN).
        (
            {"email": "ann@firm.example", "xms_edov": True, "preferred_username": "ann@firm.onmicrosoft.com"},
            "ann@firm.example",
        ),
        ({"email": "owner@victim.example", "preferred_username": "eve@attacker.example"}, "eve@attacker.example"),
        (
            {"email": "owner@victim.example", "xms_edov": False, "preferred_username": "eve@attacker.example"},
            "eve@attacker.example",
        ),
        ({"preferred_username": "ann@firm.example"}, "ann@firm.example"),
        # A guest is not its own person in the tenant it signed in to.
        ({"preferred_username": "ann_firm.example#EXT#@contoso.onmicrosoft.com"}, None),
        ({"preferred_username": "ann@firm.example", "idp": "https://sts.windows.net/other/"}, None),
        ({"email": "owner@victim.example"}, None),
        ({}, None),
    ],
)
def test_the_address_an_entra_sign_in_proves(claims: dict[str, object], address: str | None) -> None:
    signed_in = signed_in_identity({"tid": TENANT, "oid": USER, **claims})
    assert (signed_in[0] if signed_in else None) == address
    if signed_in:
        assert signed_in[1] == EntraIdentity(uuid.UUID(TENANT), uuid.UUID(USER))


def test_a_sign_in_without_tenant_and_object_ids_proves_nobody() -> None:
    assert signed_in_identity({"preferred_username": "ann@firm.example"}) is None
    assert signed_in_identity({"preferred_username": "ann@firm.example", "tid": TENANT, "oid": "not-an-id"}) is None
