"""What Entra and BC say about the hub's own credentials, through msal and httpx against
the real sandbox: a wrong or expired app secret is the hub's to fix, not the client's
(every client fails alike until it is renewed); a token cached from before the client
withdrew the app's consent is not taken for rejected credentials."""

from __future__ import annotations

import uuid

import httpx
import pytest

from hub_common.events import ClientConnection, FailureKind
from hub_fetcher.bc.failures import FetchFailure
from hub_fetcher.refresh import ClientReader
from tests.conftest import Sandbox
from tests.support.sandbox_bc import sandbox_business_central, sandbox_tokens


async def test_a_wrong_hub_secret_is_the_hubs_to_fix(sandbox: Sandbox) -> None:
    async with sandbox_tokens(sandbox, client_secret=sandbox.client_secret + "-expired") as (_, tokens):
        with pytest.raises(FetchFailure) as refused:
            await tokens.token_for("cronus-sample.onmicrosoft.com")
    assert refused.value.kind is FailureKind.CREDENTIALS_REJECTED
    assert not refused.value.transient
    failure = refused.value.to_failure()
    assert "7000215" in (failure.message or "")
    assert "the hub's own app credentials" in failure.summary and "Nothing is wrong at the client" in failure.summary
    assert "HUB_ENTRA_CLIENT_SECRET" in failure.fix
    assert "client's administrator" not in failure.fix


async def test_a_token_cached_before_consent_was_withdrawn_is_not_rejected_credentials(sandbox: Sandbox) -> None:
    """BC refuses the cached token at once (401); asking Entra again says the truth."""
    admin = httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls(), timeout=10)
    tenant = next(t for t in admin.get("/tenants").json()["tenants"] if t["consented"])
    connection = ClientConnection(tenant=tenant["domain"], environment="Production", tenant_id=uuid.UUID(tenant["id"]))
    async with sandbox_business_central(sandbox) as bc:
        reader = ClientReader(bc, web_client_base=sandbox.web_client)
        assert (await reader.discover(connection)).companies, "read once: the token is cached"
        admin.put(f"/tenants/{tenant['id']}/consent", json={"consented": False}).raise_for_status()
        try:
            with pytest.raises(FetchFailure) as refused:
                await reader.discover(connection)
        finally:
            admin.put(f"/tenants/{tenant['id']}/consent", json={"consented": True}).raise_for_status()
    assert refused.value.kind is FailureKind.CONSENT_MISSING, refused.value
