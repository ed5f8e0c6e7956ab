"""Settings of the sandbox process (prefix ``HUB_`` like every hub process)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from hub_common.settings import HubSettings


class SandboxSettings(HubSettings):
    """Where the sandbox listens, where it keeps its state and how much demo data it makes.

    The hub's app registration (``entra_client_id`` / ``entra_client_secret`` from
    HubSettings) is the one identity the sandbox's token endpoint accepts.
    """

    service_name: str = "sandbox"

    sandbox_host: str = "127.0.0.1"
    # 0 picks a free port (tests); the chosen port is reported by the server.
    sandbox_port: int = 8443
    # Keeps the CA, the server certificate and the token-signing key across restarts, so a
    # client that trusted the CA once keeps trusting it and issued tokens stay verifiable.
    sandbox_state_dir: Path = Path(".hub/sandbox")
    # Host names other than 127.0.0.1/localhost the server certificate must name, such as
    # the compose service name other containers reach it by; comma-separated.
    sandbox_certificate_names: str = ""

    @property
    def extra_certificate_names(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.sandbox_certificate_names.split(",") if name.strip())

    # Demo client tenants (tenant 0 is always the hub's sample client).
    sandbox_tenants: int = 3
    sandbox_companies_per_tenant: int = 2
    # Same seed, same tenants, companies, ids and amounts on every start.
    sandbox_seed: int = 2026

    # "Today" for the demo data (due dates, the fiscal year so far, the cues). None: the
    # current UTC date, so the data moves with the calendar.
    sandbox_business_date: dt.date | None = None

    # Server-driven paging: records per page when the client sends no
    # Prefer: odata.maxpagesize, and the most a client may ask for (BC online: 20,000).
    sandbox_page_size: int = 20_000
    sandbox_max_page_size: int = 20_000
    sandbox_max_batch_requests: int = 100

    # BC's limits per identity (app or user) and tenant. Tests lower them.
    sandbox_max_concurrent_requests: int = 5
    sandbox_max_queued_requests: int = 95
    sandbox_rate_limit_requests: int = 6_000
    sandbox_rate_limit_window_seconds: float = 300.0
    sandbox_queue_timeout_seconds: float = 480.0

    # Added to every BC request (benchmarks): HUB_SANDBOX_LATENCY_MS.
    sandbox_latency_ms: int = 0
    # Benchmarks: each API v2.0 / ODataV4 answer is computed once and then served from
    # memory (per tenant, environment, path, query, Prefer, business date and BC version)
    # while its tenant has no faults. Tokens, limits and latency are as always, so BC's
    # limits still hold; only the sandbox's own CPU per answer drops, which on a small
    # machine would otherwise bound what a benchmark of the fetchers can show.
    sandbox_memoize_answers: bool = False
    # BC compresses an answer when the request accepts gzip; so does the sandbox, above this
    # size (0 turns it off), so a client's inflating runs as it would against BC.
    sandbox_gzip_min_bytes: int = 1024

    # Accountant sign-in (OpenID Connect authorization code + PKCE). The hub app
    # registration's redirect URIs, comma-separated. As in Entra, an http loopback URI
    # (127.0.0.1 or localhost) matches on any port.
    # /connect/callback is where a client's person returns after granting a firm access.
    sandbox_redirect_uris: str = (
        "http://127.0.0.1:8000/auth/callback,http://localhost:8000/auth/callback,"
        "http://127.0.0.1:8000/connect/callback,http://localhost:8000/connect/callback,"
        "http://127.0.0.1:8000/client-access/callback,http://localhost:8000/client-access/callback"
    )
    # The app registration's display name, shown on the sign-in page.
    sandbox_app_name: str = "Accountant Hub"
    # How long an authorization code can be redeemed (Entra: 10 minutes).
    sandbox_authorization_code_lifetime_seconds: int = 600

    # The Accountant Hub the client admin's "Invite External Accountant" page sends
    # invitations to (POST {sandbox_hub_url}/api/v1/client-invitations).
    sandbox_hub_url: str = "http://127.0.0.1:8000"
    sandbox_hub_timeout_seconds: float = 15.0

    # API v2.0 webhooks (BC online's numbers; tests shorten the waits).
    # BC waits this long after the first change to a subscribed resource, then sends.
    sandbox_webhook_delay_seconds: float = 30.0
    # More changed records than this for one subscription in one wait: one "collection" notice.
    sandbox_webhook_collection_threshold: int = 1_000
    # How long the subscriber has to answer the validation handshake and each notification.
    sandbox_webhook_timeout_seconds: float = 5.0
    # First wait before a notification is sent again (after a 408, 429, 5xx or no answer);
    # it doubles with each attempt, up to an hour, for 36 hours of the sandbox clock.
    sandbox_webhook_retry_seconds: float = 60.0
    # Subscriptions per environment, all apps together (BC online: 200).
    sandbox_webhook_subscription_limit: int = 200

    @property
    def redirect_uris(self) -> tuple[str, ...]:
        return tuple(uri.strip() for uri in self.sandbox_redirect_uris.split(",") if uri.strip())
