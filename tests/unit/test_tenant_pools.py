"""Which pool a request's connection comes from: by the tenant its path names."""

from __future__ import annotations

import httpx
import pytest

from hub_fetcher.bc.transport import tenant_of


@pytest.mark.parametrize(
    ("url", "tenant"),
    [
        ("https://api.businesscentral.dynamics.com/v2.0/contoso.com/Production/api/v2.0/companies", "contoso.com"),
        ("https://api.businesscentral.dynamics.com/v2.0/contoso.com/Production/api/v2.0/$batch", "contoso.com"),
        ("https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token", "contoso.com"),
        ("https://login.microsoftonline.com/contoso.com/v2.0/.well-known/openid-configuration", "contoso.com"),
        ("https://login.microsoftonline.com/", ""),
    ],
)
def test_the_tenant_a_request_is_about(url: str, tenant: str) -> None:
    assert tenant_of(httpx.URL(url)) == tenant
