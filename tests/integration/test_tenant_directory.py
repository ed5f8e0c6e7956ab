"""Resolving a Client URL's tenant through Entra's OIDC discovery (the sandbox plays Entra):
a tenant Entra does not know, or a name it cannot read as a tenant, is the Client URL's
fault and said so; asking again would not help."""

from __future__ import annotations

import pytest

from hub_common.entra import TenantDirectory, TenantNotFound
from tests.conftest import Sandbox

SAMPLE_DOMAIN = "cronus-sample.onmicrosoft.com"


async def test_a_known_tenant_resolves_to_its_id_by_domain_and_by_id(tenant_directory: TenantDirectory) -> None:
    tenant_id = await tenant_directory.resolve(SAMPLE_DOMAIN)
    assert await tenant_directory.resolve(str(tenant_id).upper()) == tenant_id


@pytest.mark.parametrize(
    ("reference", "words"),
    [
        ("nobody-here.onmicrosoft.com", "No Microsoft Entra tenant named"),
        # AADSTS900023: neither a DNS name nor a GUID. Before, "try again in a moment".
        ("not_a_name", "No Microsoft Entra tenant named"),
        ("{1b5a3c11-2b6e-4d6e-9f55-3b1c7b0a9e21}", "No Microsoft Entra tenant named"),
    ],
)
async def test_a_tenant_entra_refuses_is_the_urls_fault_not_a_passing_outage(
    tenant_directory: TenantDirectory, sandbox: Sandbox, reference: str, words: str
) -> None:
    with pytest.raises(TenantNotFound) as refused:
        await tenant_directory.resolve(reference)
    assert words in str(refused.value)
