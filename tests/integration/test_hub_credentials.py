"""The hub's own Entra app secret is wrong or expired: the real sandbox's token endpoint
answers invalid_client (AADSTS7000215), and the failure says it is the hub's to fix, not
the client's (every client fails alike until the secret is renewed)."""

from __future__ import annotations

import httpx
import pytest

from hub_common.events import FailureKind
from hub_fetcher.bc.failures import FetchFailure
from hub_fetcher.bc.identity import TokenProvider
from hub_fetcher.settings import FetcherSettings
from tests.conftest import Sandbox


async def test_a_wrong_hub_secret_is_the_hubs_to_fix(sandbox: Sandbox) -> None:
    settings = FetcherSettings(_env_file=None, ca_bundle=sandbox.ca_bundle)
    async with httpx.AsyncClient(verify=settings.tls_verification(), timeout=30) as http:
        tokens = TokenProvider(
            authority_base=sandbox.base_url,
            client_id=sandbox.client_id,
            client_secret=sandbox.client_secret + "-expired",
            http=http,
            deadline_seconds=30,
            threads=2,
        )
        try:
            with pytest.raises(FetchFailure) as refused:
                await tokens.token_for("cronus-sample.onmicrosoft.com")
        finally:
            tokens.close()
    assert refused.value.kind is FailureKind.CREDENTIALS_REJECTED
    assert not refused.value.transient
    failure = refused.value.to_failure()
    assert "7000215" in (failure.message or "")
    assert "the hub's own app credentials" in failure.summary and "Nothing is wrong at the client" in failure.summary
    assert "HUB_ENTRA_CLIENT_SECRET" in failure.fix
    assert "client's administrator" not in failure.fix
