from __future__ import annotations

from pydantic import Field

from hub_common.settings import HubSettings


class RegistrySettings(HubSettings):
    service_name: str = "registry"
    database_url: str = "sqlite:///.hub/registry.db"
    # A new firm's dashboard starts with this client (a sandbox tenant) until removed.
    sample_client_url: str | None = None
    sample_client_name: str = "Sample client (CRONUS)"
    # Refresh every client of every firm this often; 0 turns the schedule off.
    scheduled_refresh_seconds: int = 3600
    # How long resolving a tenant's domain to its id (Entra's OIDC discovery) may take.
    entra_discovery_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
