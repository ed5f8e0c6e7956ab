"""What one sandbox process knows: settings, catalogue, signing key and run-time switches.

The catalogue and the seeded books are immutable; anything the admin API changes at run
time (consent, BC versions, faults, limits, the clock, changes to the books, webhook
subscriptions) lives here, so it is one object to reset.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from hub_sandbox.accounts import AuthorizationCodes, Directories
from hub_sandbox.book_changes import BookChanges
from hub_sandbox.clock import SandboxClock
from hub_sandbox.faults import FaultBoard
from hub_sandbox.limits import LimitSettings, RequestLimiter
from hub_sandbox.seed import CompanyBook
from hub_sandbox.settings import SandboxSettings
from hub_sandbox.tenants import SYSTEM_VERSION, SandboxCompany, SandboxTenant, TenantCatalogue, build_catalogue
from hub_sandbox.tokens import TokenIssuer
from hub_sandbox.webhooks import Webhooks, webhook_settings

# BC 30 (2027 release wave 1) no longer publishes Microsoft pages as OData web services,
# so the Accountant Portal cue services answer 404 there.
BC30_VERSION = "30.0.52310.0"
VERSIONS_BY_MAJOR = {29: SYSTEM_VERSION, 30: BC30_VERSION}


def default_bc_major(tenant: SandboxTenant) -> int:
    """Every fourth generated tenant (index 3, 7, 11, ...) already runs BC 30."""
    return 30 if tenant.index % 4 == 3 else 29


@dataclass
class SandboxState:
    settings: SandboxSettings
    catalogue: TenantCatalogue
    token_issuer: TokenIssuer
    limiter: RequestLimiter
    # Accountant sign-in: the directories users sign in from and the pending codes.
    directories: Directories
    webhooks: Webhooks
    authorization_codes: AuthorizationCodes = field(default_factory=AuthorizationCodes)
    faults: FaultBoard = field(default_factory=FaultBoard)
    clock: SandboxClock = field(default_factory=SandboxClock)
    # Documents and G/L entries posted through the admin API, laid over the seeded books.
    book_changes: BookChanges = field(default_factory=BookChanges)
    # Admin-API overrides of each tenant's consent flag and BC major version, by tenant id.
    _consent_overrides: dict[uuid.UUID, bool] = field(default_factory=dict)
    _version_overrides: dict[uuid.UUID, int] = field(default_factory=dict)
    _business_date: dt.date | None = None

    def is_consented(self, tenant: SandboxTenant) -> bool:
        """Whether the hub's app has admin consent (a service principal) in the tenant."""
        return self._consent_overrides.get(tenant.id, tenant.consented)

    def set_consent(self, tenant: SandboxTenant, consented: bool) -> None:
        self._consent_overrides[tenant.id] = consented

    def bc_major(self, tenant: SandboxTenant) -> int:
        return self._version_overrides.get(tenant.id, default_bc_major(tenant))

    def set_bc_major(self, tenant: SandboxTenant, major: int) -> None:
        if major not in VERSIONS_BY_MAJOR:
            raise ValueError(f"the sandbox plays BC {sorted(VERSIONS_BY_MAJOR)}, not {major}")
        self._version_overrides[tenant.id] = major

    def bc_version(self, tenant: SandboxTenant) -> str:
        return VERSIONS_BY_MAJOR[self.bc_major(tenant)]

    def cue_services_published(self, tenant: SandboxTenant) -> bool:
        return self.bc_major(tenant) < 30

    def business_date(self) -> dt.date:
        """The date BC's API uses as today (WorkDate of API sessions): the admin API's or
        the settings' fixed date, else the sandbox clock's UTC date."""
        return self._business_date or self.settings.sandbox_business_date or self.clock.now().date()

    def book(self, company: SandboxCompany) -> CompanyBook:
        """The company's book today, with everything posted at run time: what every BC
        read (API v2.0, cues, web client) serves."""
        return self.book_changes.book(company, self.business_date())

    def set_business_date(self, date: dt.date | None) -> None:
        self._business_date = date

    def service_principal_id(self, tenant: SandboxTenant) -> uuid.UUID:
        """The object id of the hub app's service principal in a client tenant."""
        return uuid.uuid5(tenant.id, f"servicePrincipal/{self.settings.entra_client_id}")


def limit_settings(settings: SandboxSettings) -> LimitSettings:
    return LimitSettings(
        max_concurrent=settings.sandbox_max_concurrent_requests,
        max_queued=settings.sandbox_max_queued_requests,
        window_requests=settings.sandbox_rate_limit_requests,
        window_seconds=settings.sandbox_rate_limit_window_seconds,
        queue_timeout_seconds=settings.sandbox_queue_timeout_seconds,
    )


def build_state(settings: SandboxSettings, token_issuer: TokenIssuer) -> SandboxState:
    catalogue = build_catalogue(
        seed=settings.sandbox_seed,
        tenant_count=settings.sandbox_tenants,
        companies_per_tenant=settings.sandbox_companies_per_tenant,
    )
    return SandboxState(
        settings=settings,
        catalogue=catalogue,
        token_issuer=token_issuer,
        limiter=RequestLimiter(limit_settings(settings)),
        directories=Directories(catalogue, settings.sandbox_state_dir),
        webhooks=Webhooks(webhook_settings(settings)),
    )
