"""Connect: a client's own people give the firm access to the client's tenant.

The hub has one multi-tenant app identity, and any tenant that consented to it lets it in;
that is why reading a tenant takes a grant for the firm (README, "Trust model"). Besides an
accepted Invite External Accountant, a grant comes from this flow:

1. An owner or admin takes the client card's Connect link (signed, bound to the firm, the
   client and the client's tenant id, valid for a week) and sends it to the client.
2. Someone of the client's organisation opens it, sees which firm asks, and signs in with
   Microsoft at the *client's* tenant (authorization code + PKCE through msal), asking for
   Business Central on their behalf; an administrator also gives the app its consent there.
3. On return the hub checks that the sign-in happened in that tenant (the ID token's tid,
   verified by msal) and proves the person reaches Business Central by reading the
   environment's companies with their delegated token. Only then does the registry record
   TenantAccessGranted, with the person as the actor.

Nothing in the return address is trusted by itself: the flow waits in a signed cookie,
msal checks state, nonce and PKCE, and the tenant comes from the verified token.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hub_common import commands
from hub_common.commands import CommandRejected
from hub_common.entra import redeem_auth_code
from hub_common.events import Actor, ActorKind
from hub_common.i18n import N_
from hub_gateway.dependencies import GatewayState, State
from hub_gateway.entra_apps import EntraUnreachable, entra_app
from hub_gateway.languages import rejection_text, said
from hub_gateway.web.cookies import delete_cookie
from hub_gateway.web.rendering import render
from hub_gateway.web.sealed import SealRefused, open_seal, read_sealed_cookie, seal, set_sealed_cookie
from hub_gateway.web.sign_in_refusals import sign_in_refusal

connect_pages = APIRouter(include_in_schema=False)

LINK_PURPOSE = "connect-client"
LINK_LIFETIME_SECONDS = 7 * 24 * 3600
FLOW_COOKIE = "hub_connect_flow"
FLOW_LIFETIME_SECONDS = 600
# On the user's behalf: what proves the person who signs in reaches the client's BC.
BUSINESS_CENTRAL_DELEGATED_SCOPE = "https://api.businesscentral.dynamics.com/user_impersonation"
PROOF_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class ConnectLink:
    firm_id: uuid.UUID
    firm_name: str
    client_id: uuid.UUID
    client_name: str
    tenant_id: uuid.UUID
    environment: str


class LinkRefused(ValueError):
    """A Connect link that is tampered with, expired or not one."""


def issue_link(state: GatewayState, link: ConnectLink) -> tuple[str, int]:
    payload = {
        "firm": str(link.firm_id),
        "firm_name": link.firm_name,
        "client": str(link.client_id),
        "client_name": link.client_name,
        "tenant_id": str(link.tenant_id),
        "environment": link.environment,
    }
    token = seal(state, LINK_PURPOSE, payload, LINK_LIFETIME_SECONDS)
    expires_at = int(time.time()) + LINK_LIFETIME_SECONDS
    return f"{state.settings.public_url.rstrip('/')}/connect/{quote(token)}", expires_at


def read_link(state: GatewayState, token: str) -> ConnectLink:
    try:
        claims = open_seal(state, LINK_PURPOSE, token)
        return ConnectLink(
            firm_id=uuid.UUID(claims["firm"]),
            firm_name=str(claims["firm_name"]),
            client_id=uuid.UUID(claims["client"]),
            client_name=str(claims["client_name"]),
            tenant_id=uuid.UUID(claims["tenant_id"]),
            environment=str(claims["environment"]),
        )
    except SealRefused as refused:
        if refused.expired:
            raise LinkRefused(N_("This Connect link has expired: ask your accountant for a new one.")) from refused
        raise LinkRefused(N_("This Connect link is not valid: ask your accountant to send it again.")) from refused
    except (KeyError, ValueError, TypeError) as error:
        raise LinkRefused(N_("This Connect link is not valid: ask your accountant to send it again.")) from error


def _page(request: Request, **context: Any) -> Response:
    code = status.HTTP_400_BAD_REQUEST if context.get("error") else status.HTTP_200_OK
    return render(request, "connect.html", context, status_code=code)


def _redirect_uri(state: GatewayState) -> str:
    return f"{state.settings.public_url.rstrip('/')}/connect/callback"


def _entra_away(request: Request, **context: Any) -> Response:
    error = said(request, N_("Microsoft Entra ID did not answer. Open the link again in a few minutes."))
    return render(request, "connect.html", context | {"error": error}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)


@connect_pages.get("/connect/callback", response_class=HTMLResponse)
async def finish_connect(request: Request, state: State) -> Response:
    pending = read_sealed_cookie(request, state, FLOW_COOKIE)
    started_elsewhere = said(
        request, N_("The sign-in took too long or was started elsewhere: open the Connect link again.")
    )
    if pending is None:
        return _page(request, error=started_elsewhere)
    try:
        link = read_link(state, str(pending.get("link", "")))
    except LinkRefused as refused:
        return _page(request, error=said(request, str(refused)))
    answer = dict(request.query_params.items())
    if "error" in answer:
        return _page(request, link=link, error=sign_in_refusal(request, answer))
    try:
        app = await entra_app(state, str(link.tenant_id))
    except EntraUnreachable:
        return _entra_away(request, link=link)
    result = await redeem_auth_code(app, pending["flow"], answer)
    if result is None:
        return _page(request, link=link, error=started_elsewhere)
    claims = result.get("id_token_claims")
    token = result.get("access_token")
    if "error" in result or not isinstance(claims, dict) or not isinstance(token, str):
        detail = str(result.get("error_description") or result.get("error") or said(request, N_("no token returned")))
        return _page(
            request, link=link, error=said(request, N_("Microsoft sign-in failed: %(reason)s"), reason=detail[:500])
        )
    if str(claims.get("tid", "")).lower() != str(link.tenant_id):
        return _page(
            request,
            link=link,
            error=said(
                request,
                N_(
                    "You signed in with an account of another organisation. Sign in with an account of "
                    "%(client)s's own Microsoft Entra tenant."
                ),
                client=link.client_name,
            ),
        )
    if "idp" in claims:
        # A guest of the client's tenant signs in with that tenant's id, yet speaks for
        # another organisation: an accountant the client once invited as an external
        # accountant (a guest with Business Central access) must not grant another firm.
        return _page(
            request,
            link=link,
            error=said(request, N_("Sign in with an account of your own organisation, not a guest account.")),
        )
    who = str(claims.get("preferred_username") or claims.get("email") or claims.get("oid") or "a user")[:320]
    proof = await _reaches_business_central(request, state, link, token)
    if proof is not None:
        return _page(request, link=link, error=proof)
    actor = Actor(kind=ActorKind.CLIENT_ADMIN, id=str(claims.get("oid") or who)[:320], display_name=who)
    command = commands.GrantTenantAccess(
        firm_id=link.firm_id,
        actor=actor,
        correlation_id=request.state.correlation_id,
        client_id=link.client_id,
        tenant_id=link.tenant_id,
        granted_by=who,
    )
    try:
        await commands.send_command(
            state.nats,
            commands.GRANT_TENANT_ACCESS,
            command,
            commands.TenantAccessChanged,
            timeout=state.settings.command_timeout_seconds,
        )
    except CommandRejected as rejected:
        return _page(request, link=link, error=rejection_text(request, rejected.rejection))
    response = _page(request, link=link, granted_by=who, done=True)
    delete_cookie(response, state.settings, FLOW_COOKIE)
    return response


async def _reaches_business_central(request: Request, state: GatewayState, link: ConnectLink, token: str) -> str | None:
    """None when the signed-in person reads the environment's companies; else why not (in
    the page's language)."""
    url = f"{state.settings.bc_api.rstrip('/')}/v2.0/{link.tenant_id}/{link.environment}/api/v2.0/companies"
    try:
        async with asyncio.timeout(PROOF_TIMEOUT_SECONDS):
            response = await state.http.get(
                url, params={"$top": "1", "$select": "id"}, headers={"Authorization": f"Bearer {token}"}
            )
    except (httpx.HTTPError, TimeoutError):
        return said(request, N_("Business Central did not answer; try again in a few minutes."))
    if response.status_code == 200:
        return None
    if response.status_code in (401, 403):
        return said(
            request,
            N_(
                "Your account cannot use Business Central in this environment. Sign in with an account that "
                "has Business Central access (for example the administrator's)."
            ),
        )
    if response.status_code == 404:
        return said(
            request,
            N_("The Business Central environment %(environment)s was not found in your organisation."),
            environment=repr(link.environment),
        )
    return said(
        request,
        N_("Business Central answered %(status)s; try again in a few minutes."),
        status=response.status_code,
    )


@connect_pages.get("/connect/{token}", response_class=HTMLResponse)
async def show_connect(request: Request, state: State, token: str) -> Response:
    try:
        link = read_link(state, token)
    except LinkRefused as refused:
        return _page(request, error=said(request, str(refused)))
    return _page(request, link=link, token=token)


def _from_another_site(request: Request, state: GatewayState) -> bool:
    """Whether the browser says the POST comes from another site's page.

    The POST needs no cookie, so SameSite cookies do not guard it: a page elsewhere could
    submit it and take the visitor straight to Microsoft's consent screen, which does not
    name the firm that asks, skipping the hub's page that does.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    public = urlsplit(state.settings.public_url)
    return origin is not None and origin.rstrip("/").lower() != f"{public.scheme}://{public.netloc}".lower()


@connect_pages.post("/connect/{token}")
async def start_connect(request: Request, state: State, token: str) -> Response:
    """A POST, so that mail scanners opening the link never start a sign-in."""
    try:
        link = read_link(state, token)
    except LinkRefused as refused:
        return _page(request, error=said(request, str(refused)))
    if _from_another_site(request, state):
        return _page(request, link=link, token=token)  # the hub's own page, which names the firm
    try:
        app = await entra_app(state, str(link.tenant_id))
    except EntraUnreachable:
        return _entra_away(request, link=link, token=token)
    flow: dict[str, Any] = await asyncio.to_thread(
        app.initiate_auth_code_flow,
        [BUSINESS_CENTRAL_DELEGATED_SCOPE],
        redirect_uri=_redirect_uri(state),
        prompt="consent",
    )
    response = RedirectResponse(flow["auth_uri"], status_code=status.HTTP_303_SEE_OTHER)
    set_sealed_cookie(response, state, FLOW_COOKIE, {"flow": flow, "link": token}, FLOW_LIFETIME_SECONDS)
    return response
