"""The fetcher's Entra and Business Central clients pointed at the real sandbox, wired as
the fetcher wires them (msal through the one httpx client, a tenant limiter), for tests that
drive them without a fetcher process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx

from hub_fetcher.bc.client import BusinessCentral
from hub_fetcher.bc.identity import TokenProvider
from hub_fetcher.bc.limits import TenantLimiter

if TYPE_CHECKING:
    from tests.conftest import Sandbox


@asynccontextmanager
async def sandbox_tokens(
    sandbox: Sandbox, *, client_secret: str | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, TokenProvider]]:
    """The hub app's tokens from the sandbox's Entra (its real secret unless another is given)."""
    async with httpx.AsyncClient(verify=sandbox.tls(), timeout=30) as http:
        tokens = TokenProvider(
            authority_base=sandbox.base_url,
            client_id=sandbox.client_id,
            client_secret=sandbox.client_secret if client_secret is None else client_secret,
            http=http,
            deadline_seconds=30,
            threads=4,
        )
        try:
            yield http, tokens
        finally:
            tokens.close()


@asynccontextmanager
async def sandbox_business_central(sandbox: Sandbox) -> AsyncIterator[BusinessCentral]:
    async with sandbox_tokens(sandbox) as (http, tokens):
        yield BusinessCentral(
            api_base=sandbox.base_url,
            http=http,
            tokens=tokens,
            limiter=TenantLimiter(),
            max_response_bytes=10**8,
            request_deadline_seconds=60,
        )
