"""Check Errors: every failed connection of the firm, with the technical details."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import Query

from hub_common.events import FailureKind
from hub_gateway.check_errors import queries as check_errors_queries
from hub_gateway.dependencies import (
    MAX_OFFSET,
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
    kind: Annotated[FailureKind | None, Query(description="Only failures of this kind")] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> check_errors_queries.FailurePage:
    """The history behind Check Errors: every failed refresh and Test Client URL, newest first."""
    return await check_errors_queries.failures(
        session,
        firm_id=principal.firm_id,
        client_id=client_id,
        kind=kind.value if kind else None,
        offset=offset,
        limit=limit,
    )


@check_errors_api.get("/problems")
async def check_errors_worklist(
    principal: CurrentPrincipal,
    session: Session,
    status: Literal["open", "resolved", "all"] = "open",
    client_id: uuid.UUID | None = None,
    kind: Annotated[FailureKind | None, Query(description="Only problems of this kind")] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> check_errors_queries.ProblemPage:
    """Tools → Check Errors: one entry per problem of a client or company, with how often and
    since when; resolved by the next successful read, or by a list of the client's companies
    without the company (then listed under status=resolved). ``open`` counts the firm's
    open problems whichever status is listed."""
    return await check_errors_queries.problems(
        session,
        firm_id=principal.firm_id,
        status=None if status == "all" else status,
        client_id=client_id,
        kind=kind.value if kind else None,
        offset=offset,
        limit=limit,
    )
