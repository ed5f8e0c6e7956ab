"""Fixtures that start the real sandbox over HTTPS once per test session."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from hub_sandbox.server import RunningSandbox, serve_in_background
from hub_sandbox.tenants import TenantCatalogue, build_catalogue
from tests.sandbox.sandbox_helpers import BC_SCOPE, msal_app, sandbox_settings


@pytest.fixture(scope="session")
def sandbox_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    settings = sandbox_settings(tmp_path_factory.mktemp("sandbox-state"))
    with serve_in_background(settings) as running:
        yield running


@pytest.fixture(scope="session")
def catalogue(sandbox_server: RunningSandbox) -> TenantCatalogue:
    """The same catalogue the server built (same seed and sizes)."""
    settings = sandbox_server.settings
    return build_catalogue(
        seed=settings.sandbox_seed,
        tenant_count=settings.sandbox_tenants,
        companies_per_tenant=settings.sandbox_companies_per_tenant,
    )


@pytest.fixture(scope="session")
def http(sandbox_server: RunningSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox_server.base_url, verify=sandbox_server.ssl_context(), timeout=10) as client:
        yield client


@pytest.fixture(scope="session")
def acquire_token(sandbox_server: RunningSandbox, http: httpx.Client) -> Callable[[str], str]:
    """A BC access token for a tenant (GUID or domain), through msal; cached per tenant."""
    tokens: dict[str, str] = {}

    def acquire(tenant: str) -> str:
        if tenant not in tokens:
            result = msal_app(sandbox_server, tenant, http).acquire_token_for_client(scopes=[BC_SCOPE])
            assert "access_token" in result, result
            tokens[tenant] = result["access_token"]
        return tokens[tenant]

    return acquire
