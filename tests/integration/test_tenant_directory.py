"""Resolving a Client URL's tenant through Entra's OIDC discovery (the sandbox plays Entra):
a tenant Entra does not know, or a name it cannot read as a tenant, is the Client URL's
fault and said so; asking again would not help."""

from __future__ import annotations

import uuid

import httpx
import pytest

from hub_common import entra
from hub_common.entra import LookupsSpent, TenantDirectory, TenantNotFound
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


async def test_each_firm_has_entra_asked_about_a_limited_number_of_tenants_an_hour(
    sandbox: Sandbox, sandbox_tenant_domains: list[str]
) -> None:
    """Entra throttles the hub's one address and app for every firm at once: one firm
    naming tenant after tenant must run out of its own allowance first."""
    firm, other_firm = uuid.uuid4(), uuid.uuid4()
    known = next(domain for domain in sandbox_tenant_domains if domain != SAMPLE_DOMAIN)
    async with httpx.AsyncClient(verify=sandbox.tls()) as http:
        directory = TenantDirectory(
            authority_base=sandbox.base_url, http=http, timeout_seconds=10, lookups_per_firm_per_hour=2
        )
        await directory.resolve(SAMPLE_DOMAIN)  # the hub's own lookups are not counted
        known_id = await directory.resolve(known, firm_id=firm)
        # Entra's "no such tenant" took a lookup as much as a found tenant does.
        with pytest.raises(TenantNotFound):
            await directory.resolve("nobody-1.onmicrosoft.com", firm_id=firm)
        with pytest.raises(LookupsSpent) as spent:
            await directory.resolve("nobody-2.onmicrosoft.com", firm_id=firm)
        assert spent.value.allowance == 2
        assert 3500 < spent.value.retry_after_seconds <= 3600
        # An answer the firm already had asks Entra nothing, so it is still given...
        assert await directory.resolve(known.upper(), firm_id=firm) == known_id
        # ...but not one the hub (or another firm) had: that would tell the firm which
        # tenants others named.
        with pytest.raises(LookupsSpent):
            await directory.resolve(SAMPLE_DOMAIN, firm_id=firm)
        # Another firm's allowance is its own.
        with pytest.raises(TenantNotFound):
            await directory.resolve("nobody-2.onmicrosoft.com", firm_id=other_firm)


async def test_the_directory_forgets_its_oldest_answers_beyond_its_size(
    sandbox: Sandbox, sandbox_tenant_domains: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(entra, "MAX_KNOWN_TENANTS", 1)
    firm = uuid.uuid4()
    first, second = sandbox_tenant_domains[:2]
    async with httpx.AsyncClient(verify=sandbox.tls()) as http:
        directory = TenantDirectory(
            authority_base=sandbox.base_url, http=http, timeout_seconds=10, lookups_per_firm_per_hour=2
        )
        await directory.resolve(first, firm_id=firm)
        await directory.resolve(second, firm_id=firm)
        assert await directory.resolve(second, firm_id=firm)  # kept: the newest answer
        with pytest.raises(LookupsSpent):
            await directory.resolve(first, firm_id=firm)  # forgotten, so Entra would be asked again
