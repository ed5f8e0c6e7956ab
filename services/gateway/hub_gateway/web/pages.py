"""Server-rendered pages and the accountants' sign-in.

Sign-in is OpenID Connect, authorization code + PKCE, through msal and the hub's
multi-tenant Entra app (the sandbox's identity in dev and tests). The pending flow (state,
nonce, PKCE verifier) waits in a short-lived signed cookie; the session that follows is a
random token in an HTTP-only cookie, stored only as a hash.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from hub_common import commands
from hub_common.commands import CommandRejected
from hub_common.db import transaction
from hub_common.entra import redeem_auth_code
from hub_common.events import FailureKind
from hub_common.i18n import N_
from hub_common.settings import Mode
from hub_gateway.accounts import preferences, store
from hub_gateway.accounts import queries as accounts_queries
from hub_gateway.alerts.queries import FIGURE_LABELS
from hub_gateway.auth import Principal
from hub_gateway.clients import queries as clients_queries
from hub_gateway.dashboard import queries as dashboard_queries
from hub_gateway.dependencies import (
    MANAGING_ROLES,
    SESSION_COOKIE,
    EntraIdentity,
    FirmChoiceRequired,
    GatewayState,
    Session,
    State,
    current_principal,
    display_name_for,
    ensure_accountant,
    signed_in_identity,
)
from hub_gateway.entra_apps import ENTRA_AWAY, EntraUnreachable, entra_app
from hub_gateway.languages import refusal_text, rejection_text, request_translator, said
from hub_gateway.readmodel.columns import FIGURE_COLUMNS
from hub_gateway.readmodel.models import ClientRow
from hub_gateway.refresh_schedule import queries as schedule_queries
from hub_gateway.web.cookies import delete_cookie, read_cookie, set_cookie
from hub_gateway.web.rendering import render
from hub_gateway.web.sealed import read_sealed_cookie, set_sealed_cookie
from hub_gateway.web.sign_in_refusals import sign_in_refusal

pages = APIRouter(include_in_schema=False)

FLOW_COOKIE = "hub_sign_in_flow"
CHOICE_COOKIE = "hub_firm_choice"
FLOW_LIFETIME_SECONDS = 600
SIGN_IN_SCOPES = ["email"]
# Check Errors' "Kind" filter: each kind of failure in words.
FAILURE_KIND_NAMES: dict[FailureKind, str] = {
    FailureKind.INVALID_URL: N_("invalid Client URL"),
    FailureKind.ACCESS_NOT_GRANTED: N_("access not granted"),
    FailureKind.TENANT_NOT_FOUND: N_("tenant not found"),
    FailureKind.ENVIRONMENT_NOT_FOUND: N_("environment not found"),
    FailureKind.CONSENT_MISSING: N_("consent missing"),
    FailureKind.CREDENTIALS_REJECTED: N_("credentials rejected"),
    FailureKind.NO_COMPANY_ACCESS: N_("no access to a company"),
    FailureKind.ENVIRONMENT_OFFLINE: N_("environment offline"),
    FailureKind.THROTTLED: N_("throttled"),
    FailureKind.TIMEOUT: N_("timeout"),
    FailureKind.BAD_RESPONSE: N_("bad response"),
}


def _safe_next(target: str | None) -> str:
    """Only a path on this site: an open redirect would hand sessions to someone else."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


async def _start_session(state: GatewayState, principal: Principal, target: str) -> Response:
    async with transaction(state.sessions) as session:
        secret, _ = await store.open_session(session, principal)
    response = RedirectResponse(_safe_next(target), status_code=status.HTTP_303_SEE_OTHER)
    set_cookie(response, state.settings, SESSION_COOKIE, secret, int(store.SESSION_LIFETIME.total_seconds()))
    delete_cookie(response, state.settings, FLOW_COOKIE)
    return response


def _sign_in_page(request: Request, state: GatewayState, *, error: str | None = None, target: str = "/") -> Response:
    return render(
        request,
        "sign_in.html",
        {"dev_mode": state.settings.mode is Mode.DEV, "error": error, "next": _safe_next(target)},
        status_code=status.HTTP_400_BAD_REQUEST if error else status.HTTP_200_OK,
    )


def _entra_away(request: Request, state: GatewayState, target: str) -> Response:
    """Entra does not give the sign-in's metadata now (an incident): the page says so."""
    page = _sign_in_page(
        request,
        state,
        error=said(request, ENTRA_AWAY),
        target=target,
    )
    page.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return page


async def _signed_in(request: Request, state: GatewayState, session: AsyncSession) -> Principal | None:
    try:
        return await current_principal(request, state, session)
    except HTTPException:
        return None


def _to_sign_in(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/sign-in?{urlencode({'next': target})}", status_code=status.HTTP_303_SEE_OTHER)


def _page(request: Request, template: str, principal: Principal, active: str, **context: Any) -> Response:
    browser = getattr(request.state, "browser_session", None)
    return render(
        request,
        template,
        {"principal": principal, "csrf_token": browser.csrf_token if browser else "", "active": active, **context},
    )


async def _people(session: AsyncSession, principal: Principal) -> list[dict[str, str]]:
    return [
        {"accountant_id": str(a.accountant_id), "email": a.email, "display_name": a.display_name}
        for a in await accounts_queries.accountants(session, firm_id=principal.firm_id)
    ]


@pages.get("/", response_class=HTMLResponse)
async def dashboard_page(request: Request, state: State, session: Session) -> Response:
    principal = await _signed_in(request, state, session)
    if principal is None:
        return _to_sign_in(request)
    t = request_translator(request)
    boot = {
        "columns": [
            {"key": c.key, "label": t.gettext(c.label), "short": t.gettext(c.short_label), "kind": c.kind.value}
            for c in FIGURE_COLUMNS
        ],
        "preferences": (await preferences.preferences_of(session, principal)).model_dump(mode="json"),
        "views": [view.model_dump(mode="json") for view in await preferences.saved_views(session, principal)],
        "clients": [
            {"client_id": str(c.client_id), "name": c.name, "sample": c.source == "sample"}
            for c in await clients_queries.clients(session, firm_id=principal.firm_id)
        ],
        "accountants": await _people(session, principal),
        "page_sizes": list(preferences.PAGE_SIZES),
        "currencies": await dashboard_queries.currencies_in_use(session, firm_id=principal.firm_id),
    }
    return _page(request, "dashboard.html", principal, "dashboard", boot=boot)


@pages.get("/clients", response_class=HTMLResponse)
async def manage_clients_page(request: Request, state: State, session: Session) -> Response:
    principal = await _signed_in(request, state, session)
    if principal is None:
        return _to_sign_in(request)
    people = {person["accountant_id"]: person for person in await _people(session, principal)}
    client_list = await clients_queries.clients(session, firm_id=principal.firm_id)
    boot = {
        "schedule": await _schedule_boot(session, principal, client=None),
        "can_set_time_zones": principal.role in MANAGING_ROLES,
    }
    # Translated here, as plain text the template escapes: a template's _() marks what it
    # returns as safe HTML, which a summary must never be taken for.
    t = request_translator(request)
    summaries = {c.client_id: t.gettext(str(c.failure.get("summary", ""))) for c in client_list if c.failure}
    return _page(
        request,
        "clients.html",
        principal,
        "clients",
        clients=client_list,
        people=people,
        boot=boot,
        failure_summaries=summaries,
        without_time_zone=sum(1 for c in client_list if not c.card.get("time_zone")),
    )


async def _schedule_boot(session: AsyncSession, principal: Principal, *, client: ClientRow | None) -> dict[str, Any]:
    """What the schedule form shows: the firm's schedule and, on a client's card, its own."""
    firm = await schedule_queries.schedules(session, firm_id=principal.firm_id)
    own = schedule_queries.parsed_schedule(client.refresh_schedule_json) if client else None
    return {
        "firm": firm.firm.model_dump(mode="json") if firm.firm else None,
        "own": own.model_dump(mode="json") if own else None,
        "client_id": str(client.client_id) if client else None,
        # Where the client is: a schedule of its own starts with quiet hours there.
        "card_time_zone": clients_queries.card_time_zone(client) if client else None,
        "can_edit": principal.role in MANAGING_ROLES,
    }


@pages.get("/clients/new", response_class=HTMLResponse)
async def new_client_page(request: Request, state: State, session: Session) -> Response:
    principal = await _signed_in(request, state, session)
    if principal is None:
        return _to_sign_in(request)
    boot = {"client": None, "accountants": await _people(session, principal)}
    title = request_translator(request).gettext("New client")
    return _page(request, "client_card.html", principal, "clients", boot=boot, title=title)


@pages.get("/clients/{client_id}", response_class=HTMLResponse)
async def client_card_page(client_id: uuid.UUID, request: Request, state: State, session: Session) -> Response:
    principal = await _signed_in(request, state, session)
    if principal is None:
        return _to_sign_in(request)
    row = await clients_queries.client_in_firm(session, firm_id=principal.firm_id, client_id=client_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=N_("No such client"))
    notifications = await clients_queries.notifications_by_client(
        session, firm_id=principal.firm_id, client_id=client_id
    )
    client = clients_queries.client_summary(
        row, await clients_queries.access_of(session, row), notifications.get(client_id)
    )
    boot = {
        "client": client.model_dump(mode="json"),
        "accountants": await _people(session, principal),
        "schedule": await _schedule_boot(session, principal, client=row),
    }
    return _page(request, "client_card.html", principal, "clients", boot=boot, title=client.name)


@pages.get("/errors", response_class=HTMLResponse)
async def check_errors_page(request: Request, state: State, session: Session) -> Response:
    principal = await _signed_in(request, state, session)
    if principal is None:
        return _to_sign_in(request)
    client_list = await clients_queries.clients(session, firm_id=principal.firm_id)
    boot = {
        "clients": [{"client_id": str(c.client_id), "name": c.name} for c in client_list],
        "kinds": [
            {"value": kind.value, "label": request_translator(request).gettext(FAILURE_KIND_NAMES[kind])}
            for kind in FailureKind
        ],
    }
    return _page(request, "errors.html", principal, "errors", boot=boot)


@pages.get("/alerts", response_class=HTMLResponse)
async def alerts_page(request: Request, state: State, session: Session) -> Response:
    principal = await _signed_in(request, state, session)
    if principal is None:
        return _to_sign_in(request)
    t = request_translator(request)
    boot = {
        "clients": [
            {"client_id": str(c.client_id), "name": c.name}
            for c in await clients_queries.clients(session, firm_id=principal.firm_id)
        ],
        "figures": [{"value": value, "label": t.gettext(label)} for value, label in FIGURE_LABELS.items()],
    }
    return _page(request, "alerts.html", principal, "alerts", boot=boot)


@pages.get("/colleagues", response_class=HTMLResponse)
async def colleagues_page(request: Request, state: State, session: Session) -> Response:
    principal = await _signed_in(request, state, session)
    if principal is None:
        return _to_sign_in(request)
    boot = {
        "me": str(principal.accountant_id),
        "role": principal.role,
        "manages": principal.role in MANAGING_ROLES,
    }
    return _page(request, "colleagues.html", principal, "colleagues", boot=boot)


@pages.get("/api-tokens", response_class=HTMLResponse)
async def api_tokens_page(request: Request, state: State, session: Session) -> Response:
    principal = await _signed_in(request, state, session)
    if principal is None:
        return _to_sign_in(request)
    return _page(request, "api_tokens.html", principal, "api-tokens")


@pages.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(request: Request, state: State, next: str = "/") -> Response:
    return _sign_in_page(request, state, target=next)


@pages.post("/sign-in")
async def dev_sign_in(
    request: Request,
    state: State,
    email: Annotated[str, Form(max_length=320)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Dev mode only: sign in by typing an address, without an identity provider."""
    if state.settings.mode is not Mode.DEV:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    try:
        principal = await ensure_accountant(state, request, email, display_name_for(email))
    except FirmChoiceRequired:
        return _to_firm_choice(state, email, display_name_for(email), next)
    except HTTPException as refused:
        return _sign_in_page(request, state, error=refusal_text(request, refused), target=next)
    return await _start_session(state, principal, next)


@pages.get("/auth/sign-in")
async def start_sign_in(request: Request, state: State, next: str = "/") -> Response:
    redirect_uri = f"{state.settings.public_url.rstrip('/')}/auth/callback"
    try:
        app = await entra_app(state, state.settings.sign_in_tenant)
    except EntraUnreachable:
        return _entra_away(request, state, next)
    flow: dict[str, Any] = await asyncio.to_thread(
        app.initiate_auth_code_flow, SIGN_IN_SCOPES, redirect_uri=redirect_uri
    )
    response = RedirectResponse(flow["auth_uri"], status_code=status.HTTP_302_FOUND)
    set_sealed_cookie(response, state, FLOW_COOKIE, {"flow": flow, "next": _safe_next(next)}, FLOW_LIFETIME_SECONDS)
    return response


@pages.get("/auth/callback")
async def finish_sign_in(request: Request, state: State) -> Response:
    t = request_translator(request)
    pending = read_sealed_cookie(request, state, FLOW_COOKIE)
    started_elsewhere = t.gettext("The sign-in took too long or was started elsewhere; try again.")
    if pending is None:
        return _sign_in_page(request, state, error=started_elsewhere)
    answer = {key: value for key, value in request.query_params.items()}
    if "error" in answer:
        return _sign_in_page(request, state, error=sign_in_refusal(request, answer))
    try:
        app = await entra_app(state, state.settings.sign_in_tenant)
    except EntraUnreachable:
        return _entra_away(request, state, str(pending.get("next", "/")))
    result = await redeem_auth_code(app, pending["flow"], answer)
    if result is None:
        return _sign_in_page(request, state, error=started_elsewhere)
    claims = result.get("id_token_claims")
    if "error" in result or not isinstance(claims, dict):
        # Entra's own answer to the hub (not the browser's query): shown, as long as a sentence.
        detail = str(result.get("error_description") or result.get("error") or t.gettext("no identity returned"))
        return _sign_in_page(request, state, error=t.gettext("Sign-in failed: %(reason)s", reason=detail[:500]))
    signed_in = signed_in_identity(claims)
    if signed_in is None:
        return _sign_in_page(
            request,
            state,
            error=t.gettext(
                "Microsoft did not confirm an address of your own organisation for this account;"
                " sign in with your work or school account, not as a guest."
            ),
        )
    email, identity = signed_in
    name = display_name_for(email, claims.get("name"))
    try:
        principal = await ensure_accountant(state, request, email, str(name), identity=identity)
    except FirmChoiceRequired:
        return _to_firm_choice(state, email, str(name), pending.get("next", "/"), identity)
    except HTTPException as refused:
        return _sign_in_page(request, state, error=refusal_text(request, refused))
    return await _start_session(state, principal, pending.get("next", "/"))


def _to_firm_choice(
    state: GatewayState, email: str, name: str, target: str, identity: EntraIdentity | None = None
) -> Response:
    """The verified identity waits in a signed cookie while the person chooses a firm."""
    response = RedirectResponse("/sign-in/choose-firm", status_code=status.HTTP_303_SEE_OTHER)
    pending = {"email": email, "name": name, "next": _safe_next(target)}
    if identity is not None:
        pending |= {"tid": str(identity.tenant_id), "oid": str(identity.object_id)}
    set_sealed_cookie(response, state, CHOICE_COOKIE, pending, FLOW_LIFETIME_SECONDS)
    delete_cookie(response, state.settings, FLOW_COOKIE)
    return response


def _pending_choice(request: Request, state: GatewayState) -> dict[str, Any] | None:
    """The sign-in waiting for its firm choice, or None (expired, or not this hub's).

    Outside dev mode every sign-in is Entra's, and its identity waits beside the address: a
    choice naming an address alone was not made by this hub's sign-in, but sealed by someone
    holding the hub's secret key (a pod of another service, say), and must sign nobody in."""
    pending = read_sealed_cookie(request, state, CHOICE_COOKIE)
    if pending is None or ("oid" not in pending and state.settings.mode is not Mode.DEV):
        return None
    return pending


@pages.get("/sign-in/choose-firm", response_class=HTMLResponse)
async def choose_firm_page(request: Request, state: State) -> Response:
    pending = _pending_choice(request, state)
    if pending is None:
        return _sign_in_page(
            request, state, error=request_translator(request).gettext("The sign-in took too long; sign in again.")
        )
    try:
        choices = await commands.send_command(
            state.nats,
            commands.LIST_FIRM_INVITATIONS,
            commands.ListFirmInvitations(email=pending["email"], correlation_id=request.state.correlation_id),
            commands.FirmInvitationChoices,
            timeout=state.settings.command_timeout_seconds,
        )
    except CommandRejected as rejected:
        # The registry did not answer in time (or refused): the sign-in page says why, not a 500.
        return _sign_in_page(request, state, error=rejection_text(request, rejected.rejection))
    return render(request, "choose_firm.html", {"email": pending["email"], "invitations": choices.invitations})


@pages.post("/sign-in/choose-firm")
async def choose_firm(
    request: Request, state: State, choice: Annotated[str, Form(min_length=1, max_length=100)]
) -> Response:
    """``choice`` is a firm id from the page, or ``own`` for a firm of one's own."""
    pending = _pending_choice(request, state)
    if pending is None:
        return _sign_in_page(
            request, state, error=request_translator(request).gettext("The sign-in took too long; sign in again.")
        )
    join_firm_id: uuid.UUID | None = None
    if choice != "own":
        try:
            join_firm_id = uuid.UUID(choice)
        except ValueError:
            return _sign_in_page(
                request, state, error=request_translator(request).gettext("Choose one of the firms on the page.")
            )
    try:
        identity = EntraIdentity(uuid.UUID(pending["tid"]), uuid.UUID(pending["oid"])) if "oid" in pending else None
        principal = await ensure_accountant(
            state,
            request,
            pending["email"],
            pending["name"],
            identity=identity,
            join_firm_id=join_firm_id,
            start_own_firm=join_firm_id is None,
        )
    except HTTPException as refused:
        return _sign_in_page(request, state, error=refusal_text(request, refused))
    response = await _start_session(state, principal, pending.get("next", "/"))
    delete_cookie(response, state.settings, CHOICE_COOKIE)
    return response


@pages.post("/sign-out")
async def sign_out(request: Request, state: State, session: Session) -> Response:
    await current_principal(request, state, session)  # checks the CSRF token of the form
    cookie = read_cookie(request, state.settings, SESSION_COOKIE)
    if cookie:
        async with transaction(state.sessions) as writing:
            ended = await store.close_session(writing, cookie)
        if ended is not None:
            # The session's open live streams (other tabs) end now, not at their next keep-alive.
            await state.live.announce_sign_in_change(ended.firm_id, ended.accountant_id)
    # Sign out of Entra too, then come back to the hub's sign-in page.
    after = urlencode({"post_logout_redirect_uri": f"{state.settings.public_url.rstrip('/')}/sign-in"})
    logout = f"{state.settings.entra_authority.rstrip('/')}/{state.settings.sign_in_tenant}/oauth2/v2.0/logout?{after}"
    response = RedirectResponse(logout, status_code=status.HTTP_303_SEE_OTHER)
    delete_cookie(response, state.settings, SESSION_COOKIE)
    return response
