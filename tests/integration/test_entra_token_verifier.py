"""Checking a client administrator's Entra token (the Invite External Accountant endpoint,
which takes no sign-in) against the sandbox playing Entra: the tenant is read from the token
before its signature can be checked, so what anyone may make the hub fetch is bounded."""

from __future__ import annotations

import asyncio
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jwt
import pytest

from hub_common.entra import EntraTokenVerifier, TokenRejected
from tests.conftest import Sandbox


def _unsigned_token(tenant: str) -> str:
    """What anyone can write: a token naming a tenant, signed by no key of Entra's."""
    return jwt.encode(
        {"tid": tenant}, "not a key of Entra, only of whoever wrote this token", algorithm="HS256", headers={"kid": "x"}
    )


class _Fetches:
    """Counts the requests the verifier sends (the real ones, to the sandbox)."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, request: httpx.Request) -> None:
        self.count += 1


async def _refusal(verifier: EntraTokenVerifier, tenant: str) -> str:
    with pytest.raises(TokenRejected) as refused:
        await verifier.verify(_unsigned_token(tenant))
    return str(refused.value)


async def test_tenant_after_tenant_fetches_a_bounded_number_of_key_sets(sandbox: Sandbox) -> None:
    fetches = _Fetches()
    async with httpx.AsyncClient(verify=sandbox.tls(), event_hooks={"request": [fetches]}) as http:
        verifier = EntraTokenVerifier(
            authority_base=sandbox.base_url, audience="hub", http=http, max_key_sets=3, new_tenants_per_minute=5
        )
        tenants = [str(uuid.uuid4()) for _ in range(6)]
        for tenant in tenants[:5]:
            assert "not signed by a key of its tenant" in await _refusal(verifier, tenant)
        assert fetches.count == 5
        # The sixth new tenant this minute is refused without asking Entra.
        assert "too many tenants" in await _refusal(verifier, tenants[5])
        assert fetches.count == 5
        # A tenant still kept is not fetched again, nor is one spelled in capitals (Entra
        # writes a tid in lower case; another spelling would be one more entry to keep).
        await _refusal(verifier, tenants[4])
        assert "names no tenant" in await _refusal(verifier, tenants[4].upper())
        assert fetches.count == 5
        # Only the newest three are kept: the first was let go, and asking for it again is
        # a new tenant's fetch, refused this minute.
        assert "too many tenants" in await _refusal(verifier, tenants[0])
        assert fetches.count == 5


async def test_keys_that_could_not_be_read_are_not_asked_for_again_at_once(sandbox: Sandbox) -> None:
    fetches = _Fetches()
    async with httpx.AsyncClient(verify=sandbox.tls(), event_hooks={"request": [fetches]}) as http:
        # An authority that answers 404 for every tenant's keys.
        verifier = EntraTokenVerifier(authority_base=f"{sandbox.base_url}/nowhere", audience="hub", http=http)
        tenant = str(uuid.uuid4())
        for _ in range(3):
            assert "could not be read (404)" in await _refusal(verifier, tenant)
        assert fetches.count == 1


class _KeysThenOutage(BaseHTTPRequestHandler):
    """Entra's key endpoint that answers once, then is down (503)."""

    key_set: bytes = b""
    served = 0

    def do_GET(self) -> None:
        type(self).served += 1
        if type(self).served == 1:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(self.key_set)
        else:
            self.send_response(503)
            self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


async def test_an_outage_is_not_remembered_and_a_failed_renewal_keeps_the_keys_it_had(sandbox: Sandbox) -> None:
    tenant = str(uuid.uuid4())
    async with httpx.AsyncClient(verify=sandbox.tls()) as http:
        _KeysThenOutage.key_set = (await http.get(f"{sandbox.base_url}/{tenant}/discovery/v2.0/keys")).content
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeysThenOutage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        async with httpx.AsyncClient() as http:
            verifier = EntraTokenVerifier(
                authority_base=f"http://127.0.0.1:{server.server_port}", audience="hub", http=http, cache_seconds=0.2
            )
            assert "not signed by a key of its tenant" in await _refusal(verifier, tenant)
            await asyncio.sleep(0.3)  # the keys are due for renewal, and Entra is down now
            assert "not signed by a key of its tenant" in await _refusal(verifier, tenant), "the keys it had"
            # Another tenant during the outage: refused, and asked again with the next token.
            other = str(uuid.uuid4())
            assert "(503)" in await _refusal(verifier, other)
            served = _KeysThenOutage.served
            assert "(503)" in await _refusal(verifier, other)
            assert _KeysThenOutage.served == served + 1
    finally:
        server.shutdown()


class _Throttling(BaseHTTPRequestHandler):
    """Entra's key endpoint throttling the hub (429)."""

    served = 0

    def do_GET(self) -> None:
        type(self).served += 1
        self.send_response(429)
        self.send_header("Retry-After", "1")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


async def test_entra_throttling_the_hub_is_not_taken_for_a_refused_tenant() -> None:
    """A 429 was remembered as Entra refusing the tenant: its administrators' tokens were
    refused for five minutes after Entra had long stopped throttling."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Throttling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        async with httpx.AsyncClient() as http:
            verifier = EntraTokenVerifier(
                authority_base=f"http://127.0.0.1:{server.server_port}", audience="hub", http=http
            )
            tenant = str(uuid.uuid4())
            assert "(429)" in await _refusal(verifier, tenant)
            assert "(429)" in await _refusal(verifier, tenant)
            assert _Throttling.served == 2, "asked again: throttling passes"
    finally:
        server.shutdown()
