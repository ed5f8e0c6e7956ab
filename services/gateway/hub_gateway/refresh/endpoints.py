"""Refresh one company, one client or all of them, and follow how far a refresh run has come."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Body, HTTPException, Path, Request, status
from pydantic import BaseModel, ConfigDict

from hub_common import commands
from hub_common.events import ONE_LINE
from hub_common.i18n import N_
from hub_gateway.clients import queries as clients_queries
from hub_gateway.clients.endpoints import require_client
from hub_gateway.dependencies import (
    CurrentPrincipal,
    Session,
    State,
    accountant_actor,
    feature_api,
    send_command,
)
from hub_gateway.refresh import queries as refresh_queries

refresh_api = feature_api("refresh")


class RefreshBody(BaseModel):
    # Neither field means every client: a misspelt one ("client_ids") must be a 422, not a
    # refresh of the whole firm.
    model_config = ConfigDict(extra="forbid")

    client_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None


class RefreshAccepted(BaseModel):
    refresh_ids: list[uuid.UUID]
    # GET /api/v1/refresh-runs/{run_id} tells how far these refreshes have come.
    run_id: str
    # Refreshes asked for by hand earlier whose outcome is still awaited (a slow or
    # throttled tenant): not asked again, and not part of this run. Their rows show them.
    on_their_way: list[uuid.UUID] = []
    # Of every client of the firm, how many were not asked for: the firm already had the
    # most refreshes on their way the hub queues for one firm (500). Ask again once some
    # are through; the clients asked for least recently go first.
    not_started: int = 0


@refresh_api.post("/refresh", status_code=status.HTTP_202_ACCEPTED)
async def refresh(
    principal: CurrentPrincipal,
    state: State,
    session: Session,
    request: Request,
    body: Annotated[RefreshBody, Body()] = RefreshBody(),
) -> RefreshAccepted:
    """Refresh one company, one client, or (no ids) every client of the firm. A client or
    company whose refresh asked for earlier still awaits its outcome is not asked again:
    that refresh is answered in ``on_their_way`` instead. A firm has at most 500 refreshes
    asked for by hand on their way at once: beyond them a refresh of every client starts the
    clients asked for least recently and counts the others in ``not_started``, and one of a
    single client or company is a 429."""
    if body.client_id is not None:
        await require_client(session, principal, body.client_id)
    if body.company_id is not None:
        if body.client_id is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail={"message": N_("A company refresh names its client"), "field": "client_id"},
            )
        company = await clients_queries.company_in_firm(
            session, firm_id=principal.firm_id, client_id=body.client_id, company_id=body.company_id
        )
        if company is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=N_("No such company"))
    command = commands.RequestRefresh(
        firm_id=principal.firm_id,
        actor=accountant_actor(principal),
        correlation_id=request.state.correlation_id,
        client_id=body.client_id,
        company_id=body.company_id,
    )
    started = await send_command(state, request, commands.REQUEST_REFRESH, command, commands.RefreshStarted)
    # The refreshes' events carry the request's correlation id: that is the run's id.
    return RefreshAccepted(
        refresh_ids=started.refresh_ids,
        run_id=request.state.correlation_id,
        on_their_way=started.on_their_way,
        not_started=started.not_started,
    )


@refresh_api.get("/refresh-runs/{run_id}")
async def refresh_run(
    run_id: Annotated[str, Path(min_length=1, max_length=100), ONE_LINE], principal: CurrentPrincipal, session: Session
) -> refresh_queries.RefreshProgress:
    """Progress of the refreshes one POST /api/v1/refresh started (its run_id)."""
    return await refresh_queries.refresh_progress(session, firm_id=principal.firm_id, correlation_id=run_id)
