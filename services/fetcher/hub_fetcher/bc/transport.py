"""The fetcher's one HTTP client keeps its connections in several pools, by tenant.

httpcore's connection pool looks at every connection it holds whenever a request starts or
ends. Every tenant's BC answers at the same host, so with hundreds of refreshes in flight
one pool holds hundreds of connections, and scanning them took more of the fetcher's CPU
than reading the answers (bench/README.md). Requests go to one of a few pools by their
tenant, so each pool holds a fraction of the connections and a tenant's requests reuse the
connections of its own pool.
"""

from __future__ import annotations

import ssl
import zlib

import httpx

# Enough that each pool holds a few dozen connections at hundreds of refreshes in flight.
POOLS = 16


def tenant_of(url: httpx.URL) -> str:
    """The tenant a request is about: ``/v2.0/{tenant}/…`` for BC, ``/{tenant}/…`` for Entra."""
    segments = url.path.split("/")
    if len(segments) > 2 and segments[1] == "v2.0":
        return segments[2]
    return segments[1] if len(segments) > 1 else ""


class TenantPooledTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, verify: ssl.SSLContext, max_connections: int, max_keepalive_connections: int) -> None:
        # Each pool may open as many connections as the whole client: how many requests run
        # at once is bounded by the tenants' slots, so a request never waits for a pool.
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max(1, max_keepalive_connections // POOLS),
        )
        self._pools = [httpx.AsyncHTTPTransport(verify=verify, limits=limits) for _ in range(POOLS)]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        pool = self._pools[zlib.crc32(tenant_of(request.url).encode()) % POOLS]
        return await pool.handle_async_request(request)

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()
