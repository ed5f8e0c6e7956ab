"""The client's side of the trust model: which firms may read our Business Central, and
taking one firm's access back; which invitations nobody accepted yet, and taking one back.

Someone of the client's organisation signs in with Microsoft (authorization code + PKCE
through msal); the tenant comes from the verified ID token, and a guest account (another
organisation's user) is refused. They then see every firm their tenant granted access to,
with when and by whom, and can withdraw any one of them: TenantAccessRevoked in that firm's
log, and its refreshes of the tenant stop at once. Other firms keep their access, which
withdrawing the app's consent in Entra would not allow. Below, the tenant's invitations
(Invite External Accountant) nobody has accepted: withdrawing one (InvitationWithdrawn)
stops its links from working.

The signed-in tenant waits in a short-lived signed cookie (SameSite=Lax, so another site
cannot post a withdrawal with it); nothing else is trusted from the browser.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hub_common import commands
from hub_common.commands import CommandRejected
from hub_common.entra import redeem_auth_code
from hub_common.events import Actor, ActorKind
from hub_common.i18n import N_
from hub_gateway.dependencies import GatewayState, State, rejection_error
from hub_gateway.entra_apps import ENTRA_AWAY, EntraUnreachable, entra_app
from hub_gateway.languages import rejection_text, said
from hub_gateway.web.cookies import delete_cookie
from hub_gateway.web.rendering import render
from hub_gateway.web.sealed import read_sealed_cookie, set_sealed_cookie
from hub_gateway.web.sign_in_refusals import sign_in_refusal

client_access_pages = APIRouter(include_in_schema=False)

FLOW_COOKIE = "hub_client_access_flow"
ACCESS_COOKIE = "hub_client_access"
FLOW_LIFETIME_SECONDS = 600
ACCESS_LIFETIME_SECONDS = 900
SIGN_IN_SCOPES = ["email"]


def _page(request: Request, code: int = status.HTTP_200_OK, **context: Any) -> Response:
    return render(request, "client_access.html", context, status_code=code)


def _entra_away(request: Request) -> Response:
    error = said(request, ENTRA_AWAY)
    return _page(request, status.HTTP_503_SERVICE_UNAVAILABLE, error=error)


def _redirect_uri(state: GatewayState) -> str:
    return f"{state.settings.public_url.rstrip('/')}/client-access/callback"


@client_access_pages.get("/client-access", response_class=HTMLResponse)
async def client_access_page(request: Request, state: State, done: str = "") -> Response:
    signed_in = read_sealed_cookie(request, state, ACCESS_COOKIE)
    if signed_in is None:
        return _page(request)
    try:
        listed = await commands.send_command(
            state.nats,
            commands.LIST_TENANT_GRANTS,
            commands.ListTenantGrants(
                tenant_id=uuid.UUID(signed_in["tenant_id"]), correlation_id=request.state.correlation_id
            ),
            commands.TenantGrants,
            timeout=state.settings.command_timeout_seconds,
        )
    except CommandRejected as rejected:
        # The registry did not answer in time (or refused): the page says why, not a 500.
        code = rejection_error(rejected).status_code
        return _page(request, code, who=signed_in["who"], error=rejection_text(request, rejected.rejection))
    invitations: list[commands.PendingInvitation] | None = None
    invitations_error = None
    try:
        invitations = (
            await commands.send_command(
                state.nats,
                commands.LIST_TENANT_INVITATIONS,
                commands.ListTenantInvitations(
                    tenant_id=uuid.UUID(signed_in["tenant_id"]), correlation_id=request.state.correlation_id
                ),
                commands.TenantInvitations,
                timeout=state.settings.command_timeout_seconds,
            )
        ).invitations
    except CommandRejected as rejected:
        # The firms' access is the page's first purpose: it stays usable without the list.
        invitations_error = rejection_text(request, rejected.rejection)
    return _page(
        request,
        who=signed_in["who"],
        grants=listed.grants,
        invitations=invitations,
        invitations_error=invitations_error,
        done=done[:250],
    )


@client_access_pages.post("/client-access/sign-in")
async def start_client_access(request: Request, state: State) -> Response:
    try:
        app = await entra_app(state, state.settings.sign_in_tenant)
    except EntraUnreachable:
        return _entra_away(request)
    flow: dict[str, Any] = await asyncio.to_thread(
        app.initiate_auth_code_flow, SIGN_IN_SCOPES, redirect_uri=_redirect_uri(state)
    )
    response = RedirectResponse(flow["auth_uri"], status_code=status.HTTP_303_SEE_OTHER)
    set_sealed_cookie(response, state, FLOW_COOKIE, {"flow": flow}, FLOW_LIFETIME_SECONDS)
    return response


@client_access_pages.get("/client-access/callback", response_class=HTMLResponse)
async def finish_client_access(request: Request, state: State) -> Response:
    bad = status.HTTP_400_BAD_REQUEST
    pending = read_sealed_cookie(request, state, FLOW_COOKIE)
    started_elsewhere = said(request, N_("The sign-in took too long or was started elsewhere; sign in again."))
    if pending is None:
        return _page(request, bad, error=started_elsewhere)
    answer = dict(request.query_params.items())
    if "error" in answer:
        return _page(request, bad, error=sign_in_refusal(request, answer))
    try:
        app = await entra_app(state, state.settings.sign_in_tenant)
    except EntraUnreachable:
        return _entra_away(request)
    result = await redeem_auth_code(app, pending["flow"], answer)
    if result is None:
        return _page(request, bad, error=started_elsewhere)
    claims = result.get("id_token_claims")
    if "error" in result or not isinstance(claims, dict):
        detail = str(
            result.get("error_description") or result.get("error") or said(request, N_("no identity returned"))
        )
        return _page(request, bad, error=said(request, N_("Sign-in failed: %(reason)s"), reason=detail[:500]))
    if "idp" in claims:
        # A guest signs in at a tenant that is not theirs: they do not speak for it.
        return _page(
            request,
            bad,
            error=said(request, N_("Sign in with an account of your own organisation, not a guest account.")),
        )
    try:
        tenant_id = uuid.UUID(str(claims.get("tid")))
    except ValueError:
        return _page(request, bad, error=said(request, N_("Microsoft's answer named no organisation; sign in again.")))
    who = str(claims.get("preferred_username") or claims.get("email") or claims.get("oid") or "a user")[:320]
    signed_in = {"tenant_id": str(tenant_id), "who": who, "oid": str(claims.get("oid") or who)[:320]}
    response = RedirectResponse("/client-access", status_code=status.HTTP_303_SEE_OTHER)
    set_sealed_cookie(response, state, ACCESS_COOKIE, signed_in, ACCESS_LIFETIME_SECONDS)
    delete_cookie(response, state.settings, FLOW_COOKIE)
    return response


def _signed_in_choice(
    request: Request, state: GatewayState, chosen: str, choose_from_list: str
) -> tuple[dict[str, Any], uuid.UUID] | Response:
    """Who of the client's organisation is signed in, and the entry of the page's list they
    chose; or the page saying what is wrong (``choose_from_list``: a catalogue message)."""
    signed_in = read_sealed_cookie(request, state, ACCESS_COOKIE)
    if signed_in is None:
        return _page(
            request, status.HTTP_400_BAD_REQUEST, error=said(request, N_("Your sign-in has ended; sign in again."))
        )
    try:
        return signed_in, uuid.UUID(chosen)
    except ValueError:
        return _page(request, status.HTTP_400_BAD_REQUEST, error=said(request, choose_from_list))


def _client_person(signed_in: dict[str, Any]) -> Actor:
    return Actor(kind=ActorKind.CLIENT_ADMIN, id=signed_in["oid"], display_name=signed_in["who"])


@client_access_pages.post("/client-access/withdraw")
async def withdraw_access(
    request: Request, state: State, firm_id: Annotated[str, Form(min_length=1, max_length=100)]
) -> Response:
    chosen = _signed_in_choice(request, state, firm_id, N_("Choose a firm from the list."))
    if isinstance(chosen, Response):
        return chosen
    signed_in, firm = chosen
    command = commands.WithdrawTenantAccess(
        tenant_id=uuid.UUID(signed_in["tenant_id"]),
        firm_id=firm,
        actor=_client_person(signed_in),
        correlation_id=request.state.correlation_id,
    )
    try:
        await commands.send_command(
            state.nats,
            commands.WITHDRAW_TENANT_ACCESS,
            command,
            commands.TenantAccessChanged,
            timeout=state.settings.command_timeout_seconds,
        )
    except CommandRejected as rejected:
        return _page(request, status.HTTP_404_NOT_FOUND, error=rejection_text(request, rejected.rejection))
    return RedirectResponse("/client-access?done=withdrawn", status_code=status.HTTP_303_SEE_OTHER)


@client_access_pages.post("/client-access/invitations/withdraw")
async def withdraw_invitation(
    request: Request, state: State, invitation_id: Annotated[str, Form(min_length=1, max_length=100)]
) -> Response:
    chosen = _signed_in_choice(request, state, invitation_id, N_("Choose an invitation from the list."))
    if isinstance(chosen, Response):
        return chosen
    signed_in, invitation = chosen
    command = commands.WithdrawInvitation(
        tenant_id=uuid.UUID(signed_in["tenant_id"]),
        invitation_id=invitation,
        actor=_client_person(signed_in),
        correlation_id=request.state.correlation_id,
    )
    try:
        await commands.send_command(
            state.nats,
            commands.WITHDRAW_INVITATION,
            command,
            commands.InvitationWithdrawnResult,
            timeout=state.settings.command_timeout_seconds,
        )
    except CommandRejected as rejected:
        code = rejection_error(rejected).status_code
        return _page(request, code, error=rejection_text(request, rejected.rejection))
    return RedirectResponse("/client-access?done=invitation-withdrawn", status_code=status.HTTP_303_SEE_OTHER)
