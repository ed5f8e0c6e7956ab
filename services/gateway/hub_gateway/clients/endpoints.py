"""Manage Clients: the client cards (add, change, remove), the Connect link, and ending access."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Header, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict

from hub_common import commands
from hub_common.events import ClientCard, TimeZoneName
from hub_common.i18n import N_
from hub_gateway.accounts import queries as accounts_queries
from hub_gateway.auth import Principal
from hub_gateway.clients import queries as clients_queries
from hub_gateway.clients.connect import ConnectLink, issue_link
from hub_gateway.dependencies import (
    CurrentPrincipal,
    ManagingPrincipal,
    Session,
    State,
    accountant_actor,
    feature_api,
    send_command,
)
from hub_gateway.languages import LocalizedHTTPException

clients_api = feature_api("clients")


class ClientsResponse(BaseModel):
    clients: list[clients_queries.ClientSummary]


@clients_api.get("/clients")
async def list_clients(principal: CurrentPrincipal, session: Session) -> ClientsResponse:
    return ClientsResponse(clients=await clients_queries.clients(session, firm_id=principal.firm_id))


@clients_api.post("/clients", status_code=status.HTTP_202_ACCEPTED)
async def add_client(
    principal: ManagingPrincipal, state: State, request: Request, card: ClientCard
) -> commands.ClientCreated:
    command = commands.AddClient(
        firm_id=principal.firm_id,
        actor=accountant_actor(principal),
        correlation_id=request.state.correlation_id,
        card=card,
    )
    return await send_command(state, request, commands.ADD_CLIENT, command, commands.ClientCreated)


async def require_client(session: Session, principal: Principal, client_id: uuid.UUID) -> None:
    if await clients_queries.client_in_firm(session, firm_id=principal.firm_id, client_id=client_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=N_("No such client"))


@clients_api.put(
    "/clients/{client_id}",
    status_code=status.HTTP_202_ACCEPTED,
    responses={412: {"description": "The card was saved by someone else since its card_version (If-Match)"}},
)
async def update_client(
    client_id: uuid.UUID,
    principal: ManagingPrincipal,
    state: State,
    session: Session,
    request: Request,
    card: ClientCard,
    if_match: Annotated[
        str | None,
        Header(
            description="The card_version the card was read at (GET /api/v1/clients): a save on a card someone "
            "else saved since is refused (412) instead of undoing their change. Left out, the save goes through."
        ),
    ] = None,
) -> commands.ClientCreated:
    row = await clients_queries.client_in_firm(session, firm_id=principal.firm_id, client_id=client_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=N_("No such client"))
    if if_match is not None and if_match.strip().removeprefix("W/").strip('"') != str(row.events_sequence):
        raise LocalizedHTTPException(
            status.HTTP_412_PRECONDITION_FAILED,
            N_(
                "Someone saved this client card since you opened it: reload the card to see their change, "
                "then make yours again"
            ),
            as_object=True,
        )
    command = commands.UpdateClient(
        firm_id=principal.firm_id,
        actor=accountant_actor(principal),
        correlation_id=request.state.correlation_id,
        client_id=client_id,
        card=card,
        # The read model can lag the registry by a moment: the registry holds the save to the
        # card read, so a colleague's save in that moment is not undone either.
        expected_card_revision=row.card_revision if if_match is not None and row.card_revision > 0 else None,
    )
    return await send_command(state, request, commands.UPDATE_CLIENT, command, commands.ClientCreated)


@clients_api.delete("/clients/{client_id}", status_code=status.HTTP_202_ACCEPTED)
async def remove_client(
    client_id: uuid.UUID, principal: ManagingPrincipal, state: State, session: Session, request: Request
) -> commands.ClientCreated:
    await require_client(session, principal, client_id)
    command = commands.RemoveClient(
        firm_id=principal.firm_id,
        actor=accountant_actor(principal),
        correlation_id=request.state.correlation_id,
        client_id=client_id,
    )
    return await send_command(state, request, commands.REMOVE_CLIENT, command, commands.ClientCreated)


class MissingTimeZones(BaseModel):
    model_config = ConfigDict(extra="forbid")

    time_zone: TimeZoneName


@clients_api.post("/clients/missing-time-zones", status_code=status.HTTP_202_ACCEPTED)
async def set_missing_time_zones(
    principal: ManagingPrincipal, state: State, request: Request, body: MissingTimeZones
) -> commands.MissingTimeZonesSet:
    """Every card of the firm without a time zone takes this one; cards with one keep it."""
    command = commands.SetMissingTimeZones(
        firm_id=principal.firm_id,
        actor=accountant_actor(principal),
        correlation_id=request.state.correlation_id,
        time_zone=body.time_zone,
    )
    return await send_command(state, request, commands.SET_MISSING_TIME_ZONES, command, commands.MissingTimeZonesSet)


class ConnectLinkAnswer(BaseModel):
    """The link to send the client: someone of the client's organisation signs in with it."""

    url: str
    expires_at: datetime


@clients_api.post("/clients/{client_id}/connect-link")
async def connect_link(
    client_id: uuid.UUID, principal: ManagingPrincipal, state: State, session: Session
) -> ConnectLinkAnswer:
    client = await clients_queries.client_in_firm(session, firm_id=principal.firm_id, client_id=client_id)
    if client is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=N_("No such client"))
    if client.tenant_id is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=N_("The client's tenant is not resolved yet: save the client card again, then take the link"),
        )
    firm_name = await accounts_queries.firm_name(session, firm_id=principal.firm_id)
    url, expires_at = issue_link(
        state,
        ConnectLink(
            firm_id=principal.firm_id,
            firm_name=firm_name,
            client_id=client.client_id,
            client_name=client.name,
            tenant_id=client.tenant_id,
            environment=client.environment,
        ),
    )
    return ConnectLinkAnswer(url=url, expires_at=datetime.fromtimestamp(expires_at, UTC))


@clients_api.delete("/clients/{client_id}/access", status_code=status.HTTP_202_ACCEPTED)
async def remove_access(
    client_id: uuid.UUID, principal: ManagingPrincipal, state: State, session: Session, request: Request
) -> commands.TenantAccessChanged:
    """Stop reading the client's tenant: its refreshes fail as waiting for permission."""
    await require_client(session, principal, client_id)
    command = commands.RevokeTenantAccess(
        firm_id=principal.firm_id,
        actor=accountant_actor(principal),
        correlation_id=request.state.correlation_id,
        client_id=client_id,
    )
    return await send_command(state, request, commands.REVOKE_TENANT_ACCESS, command, commands.TenantAccessChanged)
