"""The sandbox's own admin API under ``/_sandbox`` (not part of Microsoft's surface).

Unauthenticated: the sandbox listens on 127.0.0.1 for demos and tests only.

- ``GET /_sandbox/health``
- ``GET /_sandbox/tenants``: every tenant with its environments, companies and the URLs a
  hub user would paste or configure (Client URL, API root, authority).
- ``PUT /_sandbox/tenants/{tenant}/consent`` with ``{"consented": bool}``: grant or revoke
  the hub app's admin consent in a tenant.
- ``PUT /_sandbox/tenants/{tenant}/bc-version`` with ``{"major": 29|30}``: BC 30 no longer
  publishes the cue services.
- ``GET|PUT|DELETE /_sandbox/tenants/{tenant}/faults`` (PUT one :class:`FaultSpec`, replacing
  the tenant's fault of that kind), ``DELETE /_sandbox/tenants/{tenant}/faults/{kind}``,
  ``GET|DELETE /_sandbox/faults`` (every tenant).
- ``GET /_sandbox/limits`` (settings and per-tenant counters), ``PUT /_sandbox/limits``
  (change the numbers), ``DELETE /_sandbox/limits/counters`` (reset the counters).
- ``GET|PUT /_sandbox/business-date`` with ``{"date": "YYYY-MM-DD" | null}``.
"""

from __future__ import annotations

import datetime as dt
import uuid

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from hub_sandbox.client_admin import invite_url
from hub_sandbox.faults import ActiveFault, FaultKind, FaultSpec
from hub_sandbox.limits import LimitSettings
from hub_sandbox.state import VERSIONS_BY_MAJOR, SandboxState
from hub_sandbox.tenants import SandboxTenant
from hub_sandbox.web_client import WEB_CLIENT_PREFIX, web_client_url

ADMIN_PREFIX = "/_sandbox"


class CompanySummary(BaseModel):
    id: uuid.UUID
    name: str
    display_name: str
    country: str
    currency_code: str


class EnvironmentSummary(BaseModel):
    name: str
    type: str
    # What a client admin would give the accountant as the Client URL.
    client_url: str
    api_url: str
    companies: list[CompanySummary]


class TenantSummary(BaseModel):
    id: uuid.UUID
    domain: str
    display_name: str
    consented: bool
    # The language BC answers this tenant's app in when a request does not ask for one.
    language: str
    # The BC version the tenant's environments run, and whether the cue services exist.
    bc_version: str
    cue_services_published: bool
    faults: list[ActiveFault]
    # The Entra authority msal should use for this tenant.
    authority: str
    # The client administrator's "Invite External Accountant" page.
    invite_url: str
    environments: list[EnvironmentSummary]


class TenantList(BaseModel):
    web_client_base: str
    tenants: list[TenantSummary]


class Health(BaseModel):
    status: str
    tenants: int
    companies: int
    business_date: dt.date


class ConsentChange(BaseModel):
    consented: bool


class VersionChange(BaseModel):
    major: int = Field(description=f"one of {sorted(VERSIONS_BY_MAJOR)}")


class TenantCountersView(BaseModel):
    tenant_id: uuid.UUID
    requests_served: int
    max_concurrency: int
    throttled: int
    active: int
    queued: int


class LimitsView(BaseModel):
    max_concurrent: int
    max_queued: int
    window_requests: int
    window_seconds: float
    queue_timeout_seconds: float
    tenants: list[TenantCountersView]


class LimitsChange(BaseModel):
    max_concurrent: int | None = Field(default=None, ge=1)
    max_queued: int | None = Field(default=None, ge=0)
    window_requests: int | None = Field(default=None, ge=1)
    window_seconds: float | None = Field(default=None, gt=0)
    queue_timeout_seconds: float | None = Field(default=None, gt=0)


class BusinessDate(BaseModel):
    # None: the current UTC date (or HUB_SANDBOX_BUSINESS_DATE).
    date: dt.date | None


class TenantFaults(BaseModel):
    tenant_id: uuid.UUID
    faults: list[ActiveFault]


def summarise_tenant(state: SandboxState, tenant: SandboxTenant, base_url: str) -> TenantSummary:
    return TenantSummary(
        id=tenant.id,
        domain=tenant.domain,
        display_name=tenant.display_name,
        consented=state.is_consented(tenant),
        language=tenant.locale.language,
        bc_version=state.bc_version(tenant),
        cue_services_published=state.cue_services_published(tenant),
        faults=state.faults.of_tenant(tenant.id),
        authority=f"{base_url}/{tenant.id}",
        invite_url=invite_url(base_url, tenant),
        environments=[
            EnvironmentSummary(
                name=environment.name,
                type=environment.type,
                client_url=web_client_url(base_url, tenant, environment.name),
                api_url=f"{base_url}/v2.0/{tenant.id}/{environment.name}/api/v2.0",
                companies=[
                    CompanySummary(
                        id=company.id,
                        name=company.name,
                        display_name=company.display_name,
                        country=company.locale.country_code,
                        currency_code=company.locale.currency_code,
                    )
                    for company in environment.companies
                ],
            )
            for environment in tenant.environments
        ],
    )


def admin_router(state: SandboxState) -> APIRouter:
    router = APIRouter(prefix=ADMIN_PREFIX, tags=["Sandbox admin"])

    @router.get("/health")
    async def health() -> Health:
        companies = sum(len(list(t.companies)) for t in state.catalogue.tenants)
        return Health(
            status="ok",
            tenants=len(state.catalogue.tenants),
            companies=companies,
            business_date=state.business_date(),
        )

    @router.get("/tenants")
    async def tenants(request: Request) -> TenantList:
        base = str(request.base_url).rstrip("/")
        return TenantList(
            web_client_base=f"{base}{WEB_CLIENT_PREFIX}",
            tenants=[summarise_tenant(state, t, base) for t in state.catalogue.tenants],
        )

    def find(tenant: str) -> SandboxTenant:
        found = state.catalogue.find(tenant)
        if found is None:
            raise HTTPException(status_code=404, detail=f"No tenant '{tenant}' in the sandbox.")
        return found

    @router.put("/tenants/{tenant}/consent")
    async def set_consent(tenant: str, change: ConsentChange, request: Request) -> TenantSummary:
        found = find(tenant)
        state.set_consent(found, change.consented)
        return summarise_tenant(state, found, str(request.base_url).rstrip("/"))

    @router.put("/tenants/{tenant}/bc-version")
    async def set_version(tenant: str, change: VersionChange, request: Request) -> TenantSummary:
        found = find(tenant)
        try:
            state.set_bc_major(found, change.major)
        except ValueError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        return summarise_tenant(state, found, str(request.base_url).rstrip("/"))

    @router.get("/tenants/{tenant}/faults")
    async def tenant_faults(tenant: str) -> list[ActiveFault]:
        return state.faults.of_tenant(find(tenant).id)

    @router.put("/tenants/{tenant}/faults")
    async def put_fault(tenant: str, spec: FaultSpec) -> list[ActiveFault]:
        found = find(tenant)
        state.faults.put(found.id, spec)
        return state.faults.of_tenant(found.id)

    @router.delete("/tenants/{tenant}/faults", status_code=204)
    async def delete_faults(tenant: str) -> Response:
        state.faults.remove(find(tenant).id)
        return Response(status_code=204)

    @router.delete("/tenants/{tenant}/faults/{kind}", status_code=204)
    async def delete_fault(tenant: str, kind: FaultKind) -> Response:
        state.faults.remove(find(tenant).id, kind)
        return Response(status_code=204)

    @router.get("/faults")
    async def all_faults() -> list[TenantFaults]:
        return [TenantFaults(tenant_id=t, faults=f) for t, f in state.faults.all().items()]

    @router.delete("/faults", status_code=204)
    async def clear_faults() -> Response:
        state.faults.clear()
        return Response(status_code=204)

    @router.get("/limits")
    async def limits() -> LimitsView:
        return _limits_view(state)

    @router.put("/limits")
    async def change_limits(change: LimitsChange) -> LimitsView:
        current = state.limiter.settings
        values = {name: getattr(current, name) for name in LimitSettings.__dataclass_fields__}
        values |= change.model_dump(exclude_none=True)
        state.limiter.settings = LimitSettings(**values)
        return _limits_view(state)

    @router.delete("/limits/counters", status_code=204)
    async def reset_counters() -> Response:
        state.limiter.reset_counters()
        return Response(status_code=204)

    @router.get("/business-date")
    async def business_date() -> BusinessDate:
        return BusinessDate(date=state.business_date())

    @router.put("/business-date")
    async def set_business_date(change: BusinessDate) -> BusinessDate:
        state.set_business_date(change.date)
        return BusinessDate(date=state.business_date())

    return router


def _limits_view(state: SandboxState) -> LimitsView:
    settings = state.limiter.settings
    return LimitsView(
        max_concurrent=settings.max_concurrent,
        max_queued=settings.max_queued,
        window_requests=settings.window_requests,
        window_seconds=settings.window_seconds,
        queue_timeout_seconds=settings.queue_timeout_seconds,
        tenants=[
            TenantCountersView(
                tenant_id=tenant_id,
                requests_served=c.requests_served,
                max_concurrency=c.max_concurrency,
                throttled=c.throttled,
                active=c.active,
                queued=c.queued,
            )
            for tenant_id, c in state.limiter.counters().items()
        ],
    )
