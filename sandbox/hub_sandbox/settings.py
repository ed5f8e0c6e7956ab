"""Settings of the sandbox process (prefix ``HUB_`` like every hub process)."""

from __future__ import annotations

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
    # Demo client tenants (tenant 0 is always the hub's sample client).
    sandbox_tenants: int = 3
    sandbox_companies_per_tenant: int = 2
    # Same seed, same tenants, companies, ids and amounts on every start.
    sandbox_seed: int = 2026
