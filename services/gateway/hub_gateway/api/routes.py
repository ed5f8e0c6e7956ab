"""The JSON API under /api/v1 and the health check."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from hub_common import commands
from hub_common.commands import CommandRejected
from hub_common.db import database_ok, transaction
from hub_common.events import Actor, ActorKind, ClientCard, ConnectionTested
from hub_gateway.accounts import store
from hub_gateway.accounts.models import ApiToken
from hub_gateway.api.deps import (
    SIGNED_IN_ERRORS,
    CurrentPrincipal,
    ManagingPrincipal,
    Session,
    State,
    error_responses,
    rejection_error,
)
from hub_gateway.auth import Principal
from hub_gateway.readmodel import queries
from hub_gateway.web.connect import ConnectLink, issue_link

api = APIRouter(prefix="/api/v1", tags=["api"], responses=error_responses(*SIGNED_IN_ERRORS, 404, 409, 503))
health = APIRouter(tags=["health"], responses={503: {"description": "The broker or the database does not answer"}})


def _actor(principal: Principal) -> Actor:
    return Actor(kind=ActorKind.ACCOUNTANT, id=str(principal.accountant_id), display_name=principal.email)


async def _send(
    state: State,
    request: Request,
    subject: str,
    command: BaseModel,
    result_type: type[commands.ResultT],
) -> commands.ResultT:
    try:
        return await commands.send_command(
            state.nats, subject, command, result_type, timeout=state.settings.command_timeout_seconds
        )
    except CommandRejected as rejected:
        raise rejection_error(rejected) from rejected


@health.get("/healthz")
async def healthz(state: State) -> JSONResponse:
    broker_ok = state.broker.connection is not None and state.broker.connection.is_connected
    db_ok = await database_ok(state.engine)
    healthy = broker_ok and db_ok
    return JSONResponse(
        {"status": "ok" if healthy else "degraded", "broker": broker_ok, "database": db_ok},
        status_code=status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE,
    )


class ClientsResponse(BaseModel):
    clients: list[queries.ClientSummary]


@api.get("/clients")
async def list_clients(principal: CurrentPrincipal, session: Session) -> ClientsResponse:
    return ClientsResponse(clients=await queries.clients(session, firm_id=principal.firm_id))


@api.post("/clients", status_code=status.HTTP_202_ACCEPTED)
async def add_client(
    principal: ManagingPrincipal, state: State, request: Request, card: ClientCard
) -> commands.ClientCreated:
    command = commands.AddClient(
        firm_id=principal.firm_id,
        actor=_actor(principal),
        correlation_id=request.state.correlation_id,
        card=card,
    )
    return await _send(state, request, commands.ADD_CLIENT, command, commands.ClientCreated)


async def _require_client(session: Session, principal: Principal, client_id: uuid.UUID) -> None:
    if await queries.client_in_firm(session, firm_id=principal.firm_id, client_id=client_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No such client")


@api.put("/clients/{client_id}", status_code=status.HTTP_202_ACCEPTED)
async def update_client(
    client_id: uuid.UUID,
    principal: ManagingPrincipal,
    state: State,
    session: Session,
    request: Request,
    card: ClientCard,
) -> commands.ClientCreated:
    await _require_client(session, principal, client_id)
    command = commands.UpdateClient(
        firm_id=principal.firm_id,
        actor=_actor(principal),
        correlation_id=request.state.correlation_id,
        client_id=client_id,
        card=card,
    )
    return await _send(state, request, commands.UPDATE_CLIENT, command, commands.ClientCreated)


@api.delete("/clients/{client_id}", status_code=status.HTTP_202_ACCEPTED)
async def remove_client(
    client_id: uuid.UUID, principal: ManagingPrincipal, state: State, session: Session, request: Request
) -> commands.ClientCreated:
    await _require_client(session, principal, client_id)
    command = commands.RemoveClient(
        firm_id=principal.firm_id,
        actor=_actor(principal),
        correlation_id=request.state.correlation_id,
        client_id=client_id,
    )
    return await _send(state, request, commands.REMOVE_CLIENT, command, commands.ClientCreated)


class ConnectLinkAnswer(BaseModel):
    """The link to send the client: someone of the client's organisation signs in with it."""

    url: str
    expires_at: datetime


@api.post("/clients/{client_id}/connect-link")
async def connect_link(
    client_id: uuid.UUID, principal: ManagingPrincipal, state: State, session: Session
) -> ConnectLinkAnswer:
    client = await queries.client_in_firm(session, firm_id=principal.firm_id, client_id=client_id)
    if client is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No such client")
    if client.tenant_id is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail="The client's tenant is not resolved yet: save the client card again, then take the link",
        )
    firm_name = await queries.firm_name(session, firm_id=principal.firm_id)
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


@api.delete("/clients/{client_id}/access", status_code=status.HTTP_202_ACCEPTED)
async def remove_access(
    client_id: uuid.UUID, principal: ManagingPrincipal, state: State, session: Session, request: Request
) -> commands.TenantAccessChanged:
    """Stop reading the client's tenant: its refreshes fail as waiting for permission."""
    await _require_client(session, principal, client_id)
    command = commands.RevokeTenantAccess(
        firm_id=principal.firm_id,
        actor=_actor(principal),
        correlation_id=request.state.correlation_id,
        client_id=client_id,
    )
    return await _send(state, request, commands.REVOKE_TENANT_ACCESS, command, commands.TenantAccessChanged)


class RefreshBody(BaseModel):
    client_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None


class RefreshAccepted(BaseModel):
    refresh_ids: list[uuid.UUID]
    # GET /api/v1/refresh-runs/{run_id} tells how far these refreshes have come.
    run_id: str


@api.post("/refresh", status_code=status.HTTP_202_ACCEPTED)
async def refresh(
    principal: CurrentPrincipal,
    state: State,
    session: Session,
    request: Request,
    body: Annotated[RefreshBody, Body()] = RefreshBody(),
) -> RefreshAccepted:
    """Refresh one company, one client, or (no ids) every client of the firm."""
    if body.client_id is not None:
        await _require_client(session, principal, body.client_id)
    if body.company_id is not None:
        if body.client_id is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail={"message": "A company refresh names its client", "field": "client_id"},
            )
        company = await queries.company_in_firm(
            session, firm_id=principal.firm_id, client_id=body.client_id, company_id=body.company_id
        )
        if company is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No such company")
    command = commands.RequestRefresh(
        firm_id=principal.firm_id,
        actor=_actor(principal),
        correlation_id=request.state.correlation_id,
        client_id=body.client_id,
        company_id=body.company_id,
    )
    started = await _send(state, request, commands.REQUEST_REFRESH, command, commands.RefreshStarted)
    # The refreshes' events carry the request's correlation id: that is the run's id.
    return RefreshAccepted(refresh_ids=started.refresh_ids, run_id=request.state.correlation_id)


# ---------------------------------------------------------------- personal API tokens


class NewApiToken(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=100)]


class ApiTokenSummary(BaseModel):
    id: uuid.UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class CreatedApiToken(ApiTokenSummary):
    token: str


def _summary(row: ApiToken) -> ApiTokenSummary:
    return ApiTokenSummary(
        id=row.id, name=row.name, created_at=row.created_at, last_used_at=row.last_used_at, revoked_at=row.revoked_at
    )


@api.post("/tokens", status_code=status.HTTP_201_CREATED)
async def create_token(principal: CurrentPrincipal, state: State, body: NewApiToken) -> CreatedApiToken:
    """A personal API token; its value is shown once and stored only as a hash."""
    async with transaction(state.sessions) as session:
        secret, row = await store.create_api_token(session, principal, body.name)
    return CreatedApiToken(**_summary(row).model_dump(), token=secret)


@api.get("/tokens")
async def list_tokens(principal: CurrentPrincipal, session: Session) -> list[ApiTokenSummary]:
    return [_summary(row) for row in await store.list_api_tokens(session, principal.accountant_id)]


@api.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_token(token_id: uuid.UUID, principal: CurrentPrincipal, state: State) -> None:
    async with transaction(state.sessions) as session:
        if not await store.revoke_api_token(session, principal.accountant_id, token_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No such token")


# ---------------------------------------------------------------- Test Client URL


class ConnectionTestBody(BaseModel):
    client_url: Annotated[str, Field(min_length=1, max_length=2000)]
    client_id: uuid.UUID | None = None


class ConnectionTestAnswer(BaseModel):
    test_id: uuid.UUID | None
    status: Literal["ok", "failed", "pending"]
    companies: list[dict[str, Any]] = []
    latency_ms: int | None = None
    failure: dict[str, Any] | None = None


def _answer(tested: ConnectionTested) -> ConnectionTestAnswer:
    return ConnectionTestAnswer(
        test_id=tested.test_id,
        status="ok" if tested.ok else "failed",
        companies=[company.model_dump(mode="json") for company in tested.companies],
        latency_ms=tested.latency_ms,
        failure=tested.failure.model_dump(mode="json") if tested.failure else None,
    )


async def _tested(state: State, firm_id: uuid.UUID, test_id: uuid.UUID) -> ConnectionTestAnswer | None:
    """The answer, "pending" while a fetcher works on it, None when this firm never asked."""
    heard = state.connection_tests.recent(firm_id, test_id)
    if heard is not None:
        return _answer(heard)
    async with state.sessions() as session:
        row = await queries.connection_test(session, firm_id=firm_id, test_id=test_id)
    if row is None:
        return None
    if row.result_json is None:
        return ConnectionTestAnswer(test_id=test_id, status="pending")
    return _answer(ConnectionTested.model_validate_json(row.result_json))


@api.post("/connection-tests")
async def test_client_url(
    principal: CurrentPrincipal, state: State, session: Session, request: Request, body: ConnectionTestBody
) -> JSONResponse:
    """Test Client URL: OK with the companies found and the latency, or what is wrong.

    A URL that cannot be parsed is answered at once (422); otherwise a fetcher tries to
    reach the client's BC and its ConnectionTested event is awaited for a few seconds (200),
    after which the test id can be polled (202).
    """
    if body.client_id is not None:
        await _require_client(session, principal, body.client_id)
    # The wait below needs no database: the connection goes back to the pool now, so a burst
    # of tests cannot starve the projection and every other request of connections.
    await session.close()
    command = commands.TestConnection(
        firm_id=principal.firm_id,
        actor=_actor(principal),
        correlation_id=request.state.correlation_id,
        client_url=body.client_url,
        client_id=body.client_id,
    )
    try:
        started = await commands.send_command(
            state.nats, commands.TEST_CONNECTION, command, commands.ConnectionTestStarted,
            timeout=state.settings.command_timeout_seconds,
        )  # fmt: skip
    except CommandRejected as rejected:
        # An unparsable URL is answered at once, in the API's one error shape (422).
        raise rejection_error(rejected) from rejected
    tested = await state.connection_tests.wait(
        principal.firm_id, started.test_id, timeout=state.settings.connection_test_wait_seconds
    )
    if tested is not None:
        return JSONResponse(_answer(tested).model_dump(mode="json"))
    pending = ConnectionTestAnswer(test_id=started.test_id, status="pending")
    return JSONResponse(pending.model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED)


@api.get("/connection-tests/{test_id}")
async def connection_test_result(test_id: uuid.UUID, principal: CurrentPrincipal, state: State) -> ConnectionTestAnswer:
    answer = await _tested(state, principal.firm_id, test_id)
    if answer is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No such connection test")
    return answer


class Me(BaseModel):
    accountant_id: uuid.UUID
    firm_id: uuid.UUID
    email: str
    display_name: str
    role: str


@api.get("/me")
async def me(principal: CurrentPrincipal) -> Me:
    """Who the caller is, and in which firm."""
    return Me(
        accountant_id=principal.accountant_id,
        firm_id=principal.firm_id,
        email=principal.email,
        display_name=principal.display_name,
        role=principal.role,
    )


# ---------------------------------------------------------------- the firm's accountants


class AccountantSummary(BaseModel):
    accountant_id: uuid.UUID
    email: str
    display_name: str
    role: str


class ColleagueInvitationBody(BaseModel):
    email: Annotated[str, Field(min_length=3, max_length=320)]
    role: Literal["admin", "staff"] = "staff"


@api.get("/accountants")
async def list_accountants(principal: CurrentPrincipal, session: Session) -> list[AccountantSummary]:
    rows = await queries.accountants(session, firm_id=principal.firm_id)
    return [
        AccountantSummary(accountant_id=r.accountant_id, email=r.email, display_name=r.display_name, role=r.role)
        for r in rows
    ]


@api.post("/accountants/invitations", status_code=status.HTTP_202_ACCEPTED)
async def invite_colleague(
    principal: CurrentPrincipal, state: State, request: Request, body: ColleagueInvitationBody
) -> commands.ColleagueInvitation:
    """Owners and admins invite a colleague; the address joins this firm on first sign-in."""
    command = commands.InviteColleague(
        firm_id=principal.firm_id,
        actor=_actor(principal),
        correlation_id=request.state.correlation_id,
        email=body.email,
        role=body.role,
    )
    return await _send(state, request, commands.INVITE_COLLEAGUE, command, commands.ColleagueInvitation)
