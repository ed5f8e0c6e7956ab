"""Check Errors: every failed connection of the firm, with the technical details."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query

from hub_gateway.check_errors import queries as check_errors_queries
from hub_gateway.dashboard.endpoints import MAX_OFFSET
from hub_gateway.dependencies import (
    CurrentPrincipal,
    Session,
    feature_api,
)

check_errors_api = feature_api("check errors")


@check_errors_api.get("/errors")
async def check_errors(
    principal: CurrentPrincipal,
    session: Session,
    client_id: uuid.UUID | None = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> check_errors_queries.FailurePage:
    """Tools → Check Errors: every failed refresh and Test Client URL, newest first."""
    return await check_errors_queries.failures(
        session, firm_id=principal.firm_id, client_id=client_id, offset=offset, limit=limit
    )
