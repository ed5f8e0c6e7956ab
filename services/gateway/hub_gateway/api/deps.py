"""Request-scoped dependencies: the read-model session and the principal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from faststream.nats import NatsBroker
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hub_common import commands
from hub_common.commands import CommandRejected, EnsureAccountant
from hub_gateway.auth import NotAuthenticated, Principal, read_dev_token
from hub_gateway.readmodel import queries
from hub_gateway.settings import GatewaySettings

SESSION_COOKIE = "hub_session"


@dataclass
class GatewayState:
    """What the lifespan sets up once and every request shares."""

    settings: GatewaySettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    broker: NatsBroker

    @property
    def nats(self) -> Client:
        return self.broker.connection


def gateway_state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


State = Annotated[GatewayState, Depends(gateway_state)]


async def read_session(state: State) -> AsyncIterator[AsyncSession]:
    async with state.sessions() as session:
        yield session


Session = Annotated[AsyncSession, Depends(read_session)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(SESSION_COOKIE)


async def current_principal(request: Request, state: State, session: Session) -> Principal:
    token = _bearer(request)
    unauthorized = HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="Sign in first: send 'Authorization: Bearer <token>'",
        headers={"WWW-Authenticate": "Bearer"},
    )
    if token is None:
        raise unauthorized
    try:
        email, display_name = read_dev_token(state.settings, token)
    except NotAuthenticated as error:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, detail=str(error), headers={"WWW-Authenticate": "Bearer"}
        ) from error
    known = await queries.accountant_by_email(session, email)
    if known is not None:
        return Principal(known.accountant_id, known.firm_id, known.email, known.display_name, known.role)
    # First sign-in: the registry creates the accountant (and a firm) and answers at once;
    # the read model catches up when AccountantJoined comes back.
    try:
        identity = await commands.send_command(
            state.nats,
            commands.ENSURE_ACCOUNTANT,
            EnsureAccountant(
                email=email,
                display_name=display_name,
                correlation_id=request.state.correlation_id,
            ),
            commands.AccountantIdentity,
            timeout=state.settings.command_timeout_seconds,
        )
    except CommandRejected as rejected:
        if rejected.rejection.reason is commands.RejectionReason.INVALID:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=rejected.rejection.message) from rejected
        raise rejection_error(rejected) from rejected
    return Principal(identity.accountant_id, identity.firm_id, identity.email, identity.display_name, identity.role)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]

_STATUS_FOR_REASON = {
    commands.RejectionReason.INVALID: status.HTTP_422_UNPROCESSABLE_CONTENT,
    commands.RejectionReason.NOT_FOUND: status.HTTP_404_NOT_FOUND,
    commands.RejectionReason.CONFLICT: status.HTTP_409_CONFLICT,
    commands.RejectionReason.FORBIDDEN: status.HTTP_403_FORBIDDEN,
    commands.RejectionReason.UNAVAILABLE: status.HTTP_503_SERVICE_UNAVAILABLE,
}


def rejection_error(rejected: CommandRejected) -> HTTPException:
    """The HTTP answer for a command an owning service refused."""
    rejection = rejected.rejection
    detail: dict[str, str | None] = {"message": rejection.message, "field": rejection.field}
    return HTTPException(_STATUS_FOR_REASON[rejection.reason], detail=detail)
