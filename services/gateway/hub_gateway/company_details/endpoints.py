"""The Company Details pane of one company."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException, status

from hub_gateway.company_details import queries as company_details_queries
from hub_gateway.dependencies import (
    SIGNED_IN_ERRORS,
    CurrentPrincipal,
    Session,
    error_responses,
)

company_details_api = APIRouter(
    prefix="/api/v1", tags=["company details"], responses=error_responses(*SIGNED_IN_ERRORS, 404, 409, 429, 503)
)


@company_details_api.get("/clients/{client_id}/companies/{company_id}")
async def company_details(
    client_id: uuid.UUID, company_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> company_details_queries.CompanyDetails:
    """The details pane: cash accounts, the 13-week forecast, overdue invoices with BC links."""
    details = await company_details_queries.company_details(
        session, firm_id=principal.firm_id, client_id=client_id, company_id=company_id
    )
    if details is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No such company")
    return details
