"""The sandbox's own admin API under ``/_sandbox`` (not part of Microsoft's surface).

Unauthenticated: the sandbox listens on 127.0.0.1 for demos and tests only.

- ``GET /_sandbox/health``
- ``GET /_sandbox/tenants``: every tenant with its environments, companies and the URLs a
  hub user would paste or configure (Client URL, API root, authority).
- ``PUT /_sandbox/tenants/{tenant}/consent`` with ``{"consented": bool}``: grant or revoke
  the hub app's admin consent in a tenant.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel

from hub_sandbox.state import SandboxState
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
    # The Entra authority msal should use for this tenant.
    authority: str
    environments: list[EnvironmentSummary]


class TenantList(BaseModel):
    web_client_base: str
    tenants: list[TenantSummary]


class Health(BaseModel):
    status: str
    tenants: int
    companies: int


class ConsentChange(BaseModel):
    consented: bool


def summarise_tenant(state: SandboxState, tenant: SandboxTenant, base_url: str) -> TenantSummary:
    return TenantSummary(
        id=tenant.id,
        domain=tenant.domain,
        display_name=tenant.display_name,
        consented=state.is_consented(tenant),
        authority=f"{base_url}/{tenant.id}",
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
        return Health(status="ok", tenants=len(state.catalogue.tenants), companies=companies)

    @router.get("/tenants")
    async def tenants(request: Request) -> TenantList:
        base = str(request.base_url).rstrip("/")
        return TenantList(
            web_client_base=f"{base}{WEB_CLIENT_PREFIX}",
            tenants=[summarise_tenant(state, t, base) for t in state.catalogue.tenants],
        )

    @router.put("/tenants/{tenant}/consent")
    async def set_consent(tenant: str, change: ConsentChange, request: Request) -> TenantSummary:
        found = state.catalogue.find(tenant)
        if found is None:
            raise HTTPException(status_code=404, detail=f"No tenant '{tenant}' in the sandbox.")
        state.set_consent(found, change.consented)
        return summarise_tenant(state, found, str(request.base_url).rstrip("/"))

    return router
