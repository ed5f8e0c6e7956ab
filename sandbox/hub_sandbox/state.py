"""What one sandbox process knows: settings, catalogue, signing key and run-time switches.

The catalogue and the seeded books are immutable; anything the admin API changes at run
time (consent today, faults and limits later) lives here, so it is one object to reset.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from hub_sandbox.settings import SandboxSettings
from hub_sandbox.tenants import SandboxTenant, TenantCatalogue, build_catalogue
from hub_sandbox.tokens import TokenIssuer


@dataclass
class SandboxState:
    settings: SandboxSettings
    catalogue: TenantCatalogue
    token_issuer: TokenIssuer
    # Admin-API overrides of each tenant's consent flag, by tenant id.
    _consent_overrides: dict[uuid.UUID, bool] = field(default_factory=dict)

    def is_consented(self, tenant: SandboxTenant) -> bool:
        """Whether the hub's app has admin consent (a service principal) in the tenant."""
        return self._consent_overrides.get(tenant.id, tenant.consented)

    def set_consent(self, tenant: SandboxTenant, consented: bool) -> None:
        self._consent_overrides[tenant.id] = consented

    def business_date(self) -> dt.date:
        """The date BC's API would use as today (WorkDate for API sessions)."""
        return dt.datetime.now(dt.UTC).date()

    def service_principal_id(self, tenant: SandboxTenant) -> uuid.UUID:
        """The object id of the hub app's service principal in a client tenant."""
        return uuid.uuid5(tenant.id, f"servicePrincipal/{self.settings.entra_client_id}")


def build_state(settings: SandboxSettings, token_issuer: TokenIssuer) -> SandboxState:
    catalogue = build_catalogue(
        seed=settings.sandbox_seed,
        tenant_count=settings.sandbox_tenants,
        companies_per_tenant=settings.sandbox_companies_per_tenant,
    )
    return SandboxState(settings=settings, catalogue=catalogue, token_issuer=token_issuer)
