"""The Company Details pane of one company."""

from __future__ import annotations

import uuid

from fastapi import HTTPException, status

from hub_common.i18n import N_
from hub_gateway.company_details import queries as company_details_queries
from hub_gateway.dependencies import (
    CurrentPrincipal,
    Session,
    feature_api,
)

company_details_api = feature_api("company details")


@company_details_api.get("/clients/{client_id}/companies/{company_id}")
async def company_details(
    client_id: uuid.UUID, company_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> company_details_queries.CompanyDetails:
    """The details pane: cash accounts, the 13-week forecast, overdue invoices with BC links."""
    details = await company_details_queries.company_details(
        session, firm_id=principal.firm_id, client_id=client_id, company_id=company_id
    )
    if details is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=N_("No such company"))
    return details
