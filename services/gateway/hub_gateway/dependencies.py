"""What every feature's endpoints share: the gateway's state, the read-model session, the principal and its
roles, the documented error bodies, and sending a command to the service that owns it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Annotated, Any

import httpx
import msal
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from faststream.nats import NatsBroker
from nats.aio.client import Client
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hub_common import commands
from hub_common.change_notifications import NotificationSigner
from hub_common.commands import CommandRejected, EnsureAccountant
from hub_common.db import transaction
from hub_common.entra import EntraTokenVerifier
from hub_common.events import Actor, ActorKind, Failure
from hub_common.i18n import N_
from hub_common.purpose_keys import Purpose
from hub_gateway.accounts import queries as accounts_queries
from hub_gateway.accounts import store
from hub_gateway.accounts.models import PreferencesRow
from hub_gateway.auth import NotAuthenticated, Principal, read_dev_token
from hub_gateway.client_url_tests.answers import ConnectionTestAnswers
from hub_gateway.dashboard.live import LiveUpdates
from hub_gateway.languages import LocalizedHTTPException, rejection_exception, remember_preference
from hub_gateway.reports.capacity import WorkbookCapacity
from hub_gateway.settings import GatewaySettings
from hub_gateway.web.cookies import read_cookie

SESSION_COOKIE = "hub_session"


class FieldProblem(BaseModel):
    """One invalid part of a request, as FastAPI reports it."""

    loc: list[str | int]
    msg: str
    type: str


class Refusal(BaseModel):
    """A request the hub understood and refused: why, and which field if one is to blame."""

    message: str
    field: str | None = None
    # When Business Central is to blame: what it said, and how to fix it.
    failure: Failure | None = None


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer of the API has this body."""

    detail: str | Refusal | list[FieldProblem]


_ERROR_DESCRIPTIONS = {
    400: "The request cannot be carried out as sent",
    401: "Not signed in: send a session cookie or 'Authorization: Bearer <token>'",
    403: "Signed in, but not allowed: the CSRF token is missing, or the role does not allow it",
    404: "No such thing in your firm (another firm's ids answer exactly like missing ones)",
    409: "It conflicts with what exists (a duplicate, or a choice still to make)",
    422: "A field is missing or invalid: `detail` names it",
    429: "Too many at once; try again shortly",
    502: "Business Central refused or failed; `detail.failure` says what and how to fix it",
    503: "A service the hub needs did not answer in time; try again shortly",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route declares in the OpenAPI document, all with ``ErrorBody``."""
    return {code: {"model": ErrorBody, "description": _ERROR_DESCRIPTIONS[code]} for code in codes}


# Every route behind sign-in may answer these; routers add what their routes also do.
SIGNED_IN_ERRORS = (401, 403, 422)


@dataclass
class GatewayState:
    """What the lifespan sets up once and every request shares."""

    settings: GatewaySettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    broker: NatsBroker
    # Checks tokens Entra issued for the hub's app (client administrators' invitations).
    entra_tokens: EntraTokenVerifier
    # Hands the projection's changes to the open pages (server-sent events).
    live: LiveUpdates
    # Hands each Test Client URL answer to the request waiting for it.
    connection_tests: ConnectionTestAnswers
    # The process's HTTP clients (msal needs a synchronous one); they trust the configured CA.
    http: httpx.AsyncClient
    entra_http: httpx.Client
    # The msal apps by the tenant they sign in at (hub_gateway.entra_apps): accountants'
    # (organizations) and each client tenant's for Connect; when Entra last failed to give one.
    entra_apps: dict[str, msal.ConfidentialClientApplication] = field(default_factory=dict)
    entra_failures: dict[str, float] = field(default_factory=dict)
    entra_builds: dict[str, asyncio.Lock] = field(default_factory=dict)
    # Company workbooks on their way, per firm, and their builds.
    workbooks: WorkbookCapacity = field(default_factory=WorkbookCapacity)

    @cached_property
    def notification_signer(self) -> NotificationSigner:
        """Checks the keys and client states of Business Central's change notices."""
        return NotificationSigner(self.settings.key_for(Purpose.NOTIFICATIONS))

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


# Closed as soon as the endpoint returns, before the response is sent: a streaming response
# (the live page) must not hold a database connection for as long as the page is open.
Session = Annotated[AsyncSession, Depends(read_session, scope="function")]


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


@dataclass(frozen=True)
class EntraIdentity:
    """Who signed in, as Entra names them for good: the tenant and the user's object id."""

    tenant_id: uuid.UUID
    object_id: uuid.UUID


def signed_in_identity(claims: Mapping[str, object]) -> tuple[str, EntraIdentity] | None:
    """The address and identity of an accountant's Entra sign-in, or None when the token
    does not prove them.

    The address is the email claim only where Entra says its domain was verified
    (``xms_edov``): any tenant's administrator can give a user any email attribute. Else it
    is the sign-in name (UPN), whose domain the user's own tenant must have verified. A
    guest of the tenant (``idp``, or a ``#EXT#`` sign-in name) is not its own person there.
    """
    try:
        identity = EntraIdentity(uuid.UUID(str(claims.get("tid"))), uuid.UUID(str(claims.get("oid"))))
    except ValueError:
        return None
    if claims.get("idp"):
        return None
    email, verified = claims.get("email"), claims.get("xms_edov")
    if isinstance(email, str) and "@" in email and (verified is True or str(verified).lower() in ("true", "1")):
        return email, identity
    name = claims.get("preferred_username")
    if isinstance(name, str) and "@" in name and "#ext#" not in name.lower():
        return name, identity
    return None


def display_name_for(email: str, name: object = None) -> str:
    """A person's name as the hub shows it: theirs if given, else their address's local part.

    Never empty (an address like '@contoso.com' has no local part) and never longer than an
    accountant's name may be, so a sign-in cannot fail on the name alone.
    """
    chosen = name.strip() if isinstance(name, str) else ""
    return (chosen or email.split("@")[0].strip() or email.strip() or "Accountant")[:250]


class FirmChoiceRequired(HTTPException):
    """A first sign-in with colleague invitations pending: the person chooses a firm."""

    def __init__(self, message: str) -> None:
        super().__init__(status.HTTP_409_CONFLICT, detail=message)


async def ensure_accountant(
    state: GatewayState,
    request: Request,
    email: str,
    display_name: str,
    *,
    identity: EntraIdentity | None = None,
    join_firm_id: uuid.UUID | None = None,
    start_own_firm: bool = False,
) -> Principal:
    """Sign-in: the registry finds the accountant, or creates them in the firm they chose."""
    try:
        command = EnsureAccountant(
            email=email.strip(),
            display_name=display_name_for(email, display_name),
            correlation_id=request.state.correlation_id,
            join_firm_id=join_firm_id,
            start_own_firm=start_own_firm,
            entra_tenant_id=identity.tenant_id if identity else None,
            entra_object_id=identity.object_id if identity else None,
        )
    except ValidationError as error:
        raise LocalizedHTTPException(
            status.HTTP_403_FORBIDDEN,
            N_("%(email)s is not a valid email address"),
            values={"email": repr(email.strip()[:80])},
        ) from error
    try:
        accountant = await commands.send_command(
            state.nats,
            commands.ENSURE_ACCOUNTANT,
            command,
            commands.AccountantIdentity,
            timeout=state.settings.command_timeout_seconds,
        )
    except CommandRejected as rejected:
        if rejected.rejection.reason is commands.RejectionReason.INVALID:
            raise LocalizedHTTPException(
                status.HTTP_403_FORBIDDEN,
                rejected.rejection.message_id or rejected.rejection.message,
                values=rejected.rejection.values,
            ) from rejected
        if (
            rejected.rejection.field == "join_firm_id"
            and rejected.rejection.reason is commands.RejectionReason.CONFLICT
        ):
            raise FirmChoiceRequired(rejected.rejection.message) from rejected
        raise rejection_error(rejected) from rejected
    if accountant.created:
        # Joining (a firm of their own, or one that invited them): a removed accountant who
        # comes back holds nothing from before, not even what a request on its way during
        # the removal made after it, in their old role.
        async with transaction(state.sessions) as session:
            await store.end_access(session, accountant.accountant_id, datetime.now(UTC))
    return Principal(
        accountant.accountant_id, accountant.firm_id, accountant.email, accountant.display_name, accountant.role
    )


async def _offered_csrf(request: Request) -> str | None:
    offered = request.headers.get(CSRF_HEADER)
    if offered is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        offered = value if isinstance(value, str) else None
    return offered


async def current_principal(request: Request, state: State, session: Session) -> Principal:
    """The caller: a personal API token, a dev token (dev mode only) or a browser session.

    A browser session rides on a cookie the browser sends by itself, so every state-changing
    request made with it must also carry the session's CSRF token. The caller's saved
    language (their locale preference) becomes the request's language.
    """
    principal = await _authenticated(request, state, session)
    saved = await session.get(PreferencesRow, principal.accountant_id)
    remember_preference(request, saved.locale if saved is not None and saved.firm_id == principal.firm_id else None)
    return principal


async def _authenticated(request: Request, state: GatewayState, session: AsyncSession) -> Principal:
    token = _bearer(request)
    if token is not None:
        if token.startswith(store.API_TOKEN_PREFIX):
            api_token = await store.find_api_token(session, token)
            if api_token is None or await accounts_queries.access_ended(session, api_token):
                raise _unauthorized(N_("This API token is not valid or was revoked"))
            await store.record_api_token_use(state.sessions, api_token, datetime.now(UTC))
            request.state.api_token = api_token
            return store.principal_of(api_token)
        try:
            email, display_name = read_dev_token(state.settings, token)
        except NotAuthenticated as error:
            raise _unauthorized(str(error)) from error
        known = await accounts_queries.accountant_by_email(session, email)
        if known is not None:
            return Principal(known.accountant_id, known.firm_id, known.email, known.display_name, known.role)
        return await ensure_accountant(state, request, email, display_name)
    cookie = read_cookie(request, state.settings, SESSION_COOKIE)
    browser = await store.find_session(session, cookie) if cookie else None
    if browser is None or await accounts_queries.access_ended(session, browser):
        raise _unauthorized(N_("Sign in first, or send 'Authorization: Bearer <token>'"))
    if request.method not in SAFE_METHODS and not store.csrf_matches(browser, await _offered_csrf(request)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=N_("Missing or wrong CSRF token; reload the page"))
    request.state.browser_session = browser
    return store.principal_of(browser)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def _needs_principal(dependant: Dependant) -> bool:
    return any(needed.call is current_principal or _needs_principal(needed) for needed in dependant.dependencies)


async def sign_in_refusal(request: Request) -> HTTPException | None:
    """How the matched route would refuse this request's credentials (401, or 403 for a
    missing CSRF token), or None when it needs none or they are good: for an answer given
    before the route asked who is calling."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not _needs_principal(route.dependant):
        return None
    state = gateway_state(request)
    try:
        async with state.sessions() as session:
            await _authenticated(request, state, session)
    except HTTPException as refusal:
        return refusal
    return None


async def still_signed_in(request: Request, state: GatewayState, principal: Principal) -> bool:
    """Whether the request's credentials still name the same accountant of the same firm in
    the same role: for a long-lived request (the live stream) that outlasts a sign-out, an
    expired session, a revoked API token or a change of role."""
    try:
        async with state.sessions() as session:
            now = await _authenticated(request, state, session)
    except HTTPException:
        return False
    return (now.accountant_id, now.firm_id, now.role) == (principal.accountant_id, principal.firm_id, principal.role)


# The role matrix (README, "Roles"): staff read the dashboard, refresh, download and test;
# owners and admins also manage clients, their access and the firm's people.
MANAGING_ROLES = frozenset({"owner", "admin"})


async def managing_principal(principal: CurrentPrincipal) -> Principal:
    if principal.role not in MANAGING_ROLES:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail=N_("Only the firm's owners and admins can do this; ask one of them")
        )
    return principal


ManagingPrincipal = Annotated[Principal, Depends(managing_principal)]

_STATUS_FOR_REASON = {
    commands.RejectionReason.INVALID: status.HTTP_422_UNPROCESSABLE_CONTENT,
    commands.RejectionReason.NOT_FOUND: status.HTTP_404_NOT_FOUND,
    commands.RejectionReason.CONFLICT: status.HTTP_409_CONFLICT,
    commands.RejectionReason.FORBIDDEN: status.HTTP_403_FORBIDDEN,
    commands.RejectionReason.UNAVAILABLE: status.HTTP_503_SERVICE_UNAVAILABLE,
    commands.RejectionReason.UPSTREAM: status.HTTP_502_BAD_GATEWAY,
    commands.RejectionReason.RATE_LIMITED: status.HTTP_429_TOO_MANY_REQUESTS,
    commands.RejectionReason.PRECONDITION_FAILED: status.HTTP_412_PRECONDITION_FAILED,
}


def rejection_error(rejected: CommandRejected) -> HTTPException:
    """The HTTP answer for a command an owning service refused."""
    return rejection_exception(_STATUS_FOR_REASON[rejected.rejection.reason], rejected.rejection)


def refuse_api_token(request: Request, detail: str) -> None:
    """Access that outlives a token's revocation (another token, a colleague's membership;
    a webhook: SetAlertRule.webhook_may_change) is given only by someone signed in: a leaked token
    must not be able to make it."""
    if getattr(request.state, "api_token", None) is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=detail)


def accountant_actor(principal: Principal) -> Actor:
    """Who a command or event says acted: the signed-in accountant."""
    return Actor(kind=ActorKind.ACCOUNTANT, id=str(principal.accountant_id), display_name=principal.email)


async def send_command(
    state: State,
    request: Request,
    subject: str,
    command: BaseModel,
    result_type: type[commands.ResultT],
) -> commands.ResultT:
    """Ask the owning service (request/reply); its refusal becomes the documented HTTP error."""
    try:
        return await commands.send_command(
            state.nats, subject, command, result_type, timeout=state.settings.command_timeout_seconds
        )
    except CommandRejected as rejected:
        raise rejection_error(rejected) from rejected


# Paging stops here: past it a firm has nothing to show, and databases refuse larger offsets.
MAX_OFFSET = 1_000_000


def feature_api(feature: str) -> APIRouter:
    """One feature's part of the JSON API under /api/v1, documenting the error bodies any
    signed-in route may answer with."""
    return APIRouter(prefix="/api/v1", tags=[feature], responses=error_responses(*SIGNED_IN_ERRORS, 404, 409, 429, 503))
