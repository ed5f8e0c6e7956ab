"""Who is signed in, the firm's accountants and colleague invitations, and personal API tokens."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import HTTPException, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from hub_common import commands
from hub_common.db import transaction
from hub_common.events import REQUIRED_LINE
from hub_common.i18n import N_
from hub_gateway.accounts import queries as accounts_queries
from hub_gateway.accounts import store
from hub_gateway.accounts.models import ApiToken
from hub_gateway.dependencies import (
    CurrentPrincipal,
    ManagingPrincipal,
    Session,
    State,
    accountant_actor,
    feature_api,
    refuse_api_token,
    send_command,
)
from hub_gateway.languages import LocalizedHTTPException, request_language, said

accounts_api = feature_api("accounts")


class NewApiToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=100), REQUIRED_LINE]
    # Days it works, at most a year and a day; left out or null: until revoked.
    expires_in_days: Annotated[int, Field(ge=1, le=366)] | None = None


class ApiTokenSummary(BaseModel):
    id: uuid.UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None


class CreatedApiToken(ApiTokenSummary):
    token: str


def _summary(row: ApiToken) -> ApiTokenSummary:
    return ApiTokenSummary(
        id=row.id,
        name=row.name,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        expires_at=row.expires_at,
    )


@accounts_api.post("/tokens", status_code=status.HTTP_201_CREATED)
async def create_token(
    principal: CurrentPrincipal, state: State, request: Request, body: NewApiToken
) -> CreatedApiToken:
    """A personal API token; its value is shown once and stored only as a hash. Made when
    signed in, never with another API token: a leaked token must not be able to make the
    keys that outlive its revocation."""
    refuse_api_token(request, N_("API tokens are made when signed in to the hub, not with another API token"))
    try:
        async with transaction(state.sessions) as session:
            lifetime = timedelta(days=body.expires_in_days) if body.expires_in_days is not None else None
            secret, row = await store.create_api_token(session, principal, body.name, lifetime)
    except store.TooManyApiTokens:
        raise LocalizedHTTPException(
            status.HTTP_409_CONFLICT,
            N_("You have %(count)s API tokens that work, the most the hub keeps; revoke one first"),
            values={"count": store.MAX_LIVE_API_TOKENS},
        ) from None
    return CreatedApiToken(**_summary(row).model_dump(), token=secret)


@accounts_api.get("/tokens")
async def list_tokens(principal: CurrentPrincipal, session: Session) -> list[ApiTokenSummary]:
    return [_summary(row) for row in await store.list_api_tokens(session, principal)]


@accounts_api.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_token(token_id: uuid.UUID, principal: CurrentPrincipal, state: State) -> None:
    async with transaction(state.sessions) as session:
        if not await store.revoke_api_token(session, principal, token_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=N_("No such token"))
    # A live stream the token opened ends now, not at its next keep-alive.
    await state.live.announce_sign_in_change(principal.firm_id, principal.accountant_id)


class Me(BaseModel):
    accountant_id: uuid.UUID
    firm_id: uuid.UUID
    email: str
    display_name: str
    role: str


@accounts_api.get("/me")
async def me(principal: CurrentPrincipal) -> Me:
    """Who the caller is, and in which firm."""
    return Me(
        accountant_id=principal.accountant_id,
        firm_id=principal.firm_id,
        email=principal.email,
        display_name=principal.display_name,
        role=principal.role,
    )


class AccountantSummary(BaseModel):
    accountant_id: uuid.UUID
    email: str
    display_name: str
    role: str


class ColleagueInvitationBody(BaseModel):
    # A misspelt field is refused: {"Role": "admin"} would otherwise invite as staff.
    model_config = ConfigDict(extra="forbid")

    email: Annotated[str, Field(min_length=3, max_length=320)]
    role: Literal["admin", "staff"] = "staff"


@accounts_api.get("/accountants")
async def list_accountants(principal: CurrentPrincipal, session: Session) -> list[AccountantSummary]:
    rows = await accounts_queries.accountants(session, firm_id=principal.firm_id)
    return [
        AccountantSummary(accountant_id=r.accountant_id, email=r.email, display_name=r.display_name, role=r.role)
        for r in rows
    ]


@accounts_api.delete("/accountants/{accountant_id}")
async def remove_colleague(
    accountant_id: uuid.UUID, principal: ManagingPrincipal, state: State, request: Request
) -> commands.ColleagueRemoved:
    """Owners and admins remove a colleague who left the firm. When this answers, their
    browser sessions and API tokens no longer work and their open pages close; their alert
    rules are removed and the clients assigned to them are assigned to nobody. Nobody
    removes themselves, and only an owner removes an owner. A new invitation brings them
    back."""
    command = commands.RemoveColleague(
        firm_id=principal.firm_id,
        actor=accountant_actor(principal),
        correlation_id=request.state.correlation_id,
        accountant_id=accountant_id,
    )
    removed = await send_command(state, request, commands.REMOVE_COLLEAGUE, command, commands.ColleagueRemoved)
    async with transaction(state.sessions) as session:
        await store.end_access(session, removed.accountant_id, datetime.now(UTC))
    await state.live.announce_sign_in_change(principal.firm_id, removed.accountant_id)
    return removed


@accounts_api.get("/accountants/invitations")
async def list_colleague_invitations(
    principal: ManagingPrincipal, state: State, request: Request
) -> list[commands.PendingColleagueInvitation]:
    """Owners and admins: the firm's colleague invitations nobody has accepted or withdrawn,
    newest mail first. An invitation lets its address join until ``expires_at`` (its last
    mail plus the hub's lifetime, 30 days unless the operator says otherwise); expired ones
    are listed too, and inviting the address again mails a new one."""
    command = commands.ListColleagueInvitations(
        firm_id=principal.firm_id, actor=accountant_actor(principal), correlation_id=request.state.correlation_id
    )
    listed = await send_command(
        state, request, commands.LIST_COLLEAGUE_INVITATIONS, command, commands.ColleagueInvitations
    )
    return listed.invitations


@accounts_api.delete("/accountants/invitations/{invitation_id}")
async def withdraw_colleague_invitation(
    invitation_id: uuid.UUID, principal: ManagingPrincipal, state: State, request: Request
) -> commands.ColleagueInvitationWithdrawnResult:
    """Owners and admins withdraw an invitation nobody has accepted (sent to the wrong
    address, or to someone who will not join): the address can no longer join through it.
    A mail already sent still arrives; its sign-in finds no invitation waiting."""
    command = commands.WithdrawColleagueInvitation(
        firm_id=principal.firm_id,
        actor=accountant_actor(principal),
        correlation_id=request.state.correlation_id,
        invitation_id=invitation_id,
    )
    return await send_command(
        state, request, commands.WITHDRAW_COLLEAGUE_INVITATION, command, commands.ColleagueInvitationWithdrawnResult
    )


class ColleagueInvitationAnswer(commands.ColleagueInvitation):
    # What happened, in the caller's language, when the mail was not sent again.
    message: str | None = None


@accounts_api.post(
    "/accountants/invitations",
    status_code=status.HTTP_202_ACCEPTED,
    responses={status.HTTP_200_OK: {"model": ColleagueInvitationAnswer, "description": "Role updated, not mailed"}},
)
async def invite_colleague(
    principal: CurrentPrincipal, state: State, request: Request, response: Response, body: ColleagueInvitationBody
) -> ColleagueInvitationAnswer:
    """Owners and admins invite a colleague; the address joins this firm on first sign-in.

    202: the invitation is mailed. 200: the address was mailed less than a day ago, so only
    its role was updated (``mail_sent`` false). Never with an API token: whoever joins
    through the invitation would keep the firm's data after the token is revoked."""
    refuse_api_token(request, N_("Colleagues are invited when signed in to the hub, not with an API token"))
    command = commands.InviteColleague(
        firm_id=principal.firm_id,
        actor=accountant_actor(principal),
        correlation_id=request.state.correlation_id,
        email=body.email,
        role=body.role,
        language=request_language(request),
    )
    invitation = await send_command(state, request, commands.INVITE_COLLEAGUE, command, commands.ColleagueInvitation)
    if invitation.mail_sent:
        return ColleagueInvitationAnswer(**invitation.model_dump())
    response.status_code = status.HTTP_200_OK
    return ColleagueInvitationAnswer(
        **invitation.model_dump(),
        message=said(
            request,
            N_(
                "The invitation of %(email)s now gives the role %(role)s. They were mailed less than 24 hours ago,"
                " so the mail was not sent again; ask them to look for it (their spam folder too)."
            ),
            email=invitation.email,
            # The role's own word in the reader's language ("Administrator"), as pages name it.
            role=said(request, invitation.role),
        ),
    )
