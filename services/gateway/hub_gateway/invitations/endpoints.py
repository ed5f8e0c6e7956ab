"""The client's side of "Invite External Accountant": an administrator of the client's
Entra tenant raises an invitation for an accountant's address.

The tenant is taken from the administrator's Entra token (verified signature, issuer,
audience = the hub's app, and a directory role BC's wizard requires), never from the body.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from hub_common import commands
from hub_common.commands import CommandRejected
from hub_common.entra import TokenRejected, is_tenant_admin
from hub_common.events import ONE_LINE, PRINTABLE_TEXT, NewEnvironmentName
from hub_common.i18n import N_
from hub_gateway.dependencies import State, error_responses, rejection_error
from hub_gateway.languages import LocalizedHTTPException, request_language

client_invitations = APIRouter(
    prefix="/api/v1", tags=["client invitations"], responses=error_responses(401, 403, 404, 409, 422, 429, 503)
)


class ClientInvitationBody(BaseModel):
    # Sent by the client's "Invite External Accountant" wizard, which the hub does not
    # release: a field it adds later is ignored rather than refusing every invitation.
    model_config = ConfigDict(extra="ignore")

    accountant_email: Annotated[str, Field(min_length=3, max_length=320)]
    accountant_name: Annotated[str, Field(min_length=1, max_length=250), ONE_LINE]
    environment: NewEnvironmentName
    companies: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=250), ONE_LINE]], Field(min_length=1, max_length=300)
    ]
    client_name: Annotated[str, Field(min_length=1, max_length=250), ONE_LINE]
    welcome_text: Annotated[str, Field(max_length=4000), PRINTABLE_TEXT] | None = None


@client_invitations.post("/client-invitations", status_code=status.HTTP_202_ACCEPTED)
async def raise_invitation(request: Request, state: State, body: ClientInvitationBody) -> commands.InvitationRaised:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=N_("Sign in as an administrator of the client's Microsoft Entra tenant"),
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        claims = await state.entra_tokens.verify(token.strip())
    except TokenRejected as error:
        raise LocalizedHTTPException(
            status.HTTP_401_UNAUTHORIZED,
            N_("The administrator's token was refused: %(reason)s"),
            values={"reason": str(error)},
        ) from error
    if not is_tenant_admin(claims):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=N_(
                "Only a Global Administrator or User Administrator of the client's tenant can invite an accountant"
            ),
        )
    administrator = claims.get("preferred_username") or claims.get("oid") or "client administrator"
    command = commands.RaiseInvitation(
        tenant=str(claims["tid"]),
        environment=body.environment,
        client_name=body.client_name,
        companies=body.companies,
        accountant_email=body.accountant_email,
        accountant_name=body.accountant_name,
        welcome_text=body.welcome_text,
        raised_by=str(administrator)[:320],
        correlation_id=request.state.correlation_id,
        language=request_language(request),
    )
    try:
        return await commands.send_command(
            state.nats,
            commands.RAISE_INVITATION,
            command,
            commands.InvitationRaised,
            timeout=state.settings.command_timeout_seconds,
        )
    except CommandRejected as rejected:
        raise rejection_error(rejected) from rejected
