"""Accountant sign-in: Entra's OpenID Connect authorization code flow with PKCE.

The decisions, without a web framework (the pages and routes are in
:mod:`hub_sandbox.sign_in_pages`; the token route in :mod:`hub_sandbox.identity` hands the
``authorization_code`` and ``refresh_token`` grants to :func:`user_token`):

1. ``GET /{tenant}/oauth2/v2.0/authorize`` is checked by :func:`read_authorization_request`:
   the app and its redirect URI first (errors shown on a page, as Entra never redirects
   to an unverified URI), then the rest (errors sent back to the redirect URI).
2. The sign-in page posts an email with a signed ``flowToken`` carrying the request
   (:func:`seal_flow` / :func:`open_flow`); :func:`sign_in` makes the single-use code.
3. ``POST /{tenant}/oauth2/v2.0/token`` redeems the code against the client secret, the
   redirect URI and the PKCE verifier, and returns v2.0 ID tokens, v1.0 access tokens
   (Business Central or Microsoft Graph, one resource per request) and refresh tokens.

``{tenant}`` may also be ``common`` or ``organizations``: the user's tenant then follows
from their email domain (see :mod:`hub_sandbox.accounts`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import SplitResult, urlencode, urlsplit, urlunsplit

from cryptography.fernet import Fernet, InvalidToken

from hub_sandbox.accounts import AuthorizationGrant, Directory, SandboxUser
from hub_sandbox.entra import (
    ClientCredentials,
    EntraError,
    application_not_found,
    describe,
    invalid_client_secret,
    missing_parameter,
    tenant_not_found,
)
from hub_sandbox.state import SandboxState
from hub_sandbox.tenants import SandboxTenant
from hub_sandbox.tokens import (
    ACCESS_TOKEN_LIFETIME,
    BUSINESS_CENTRAL_APP_ID,
    BUSINESS_CENTRAL_RESOURCE,
    base64url,
    v1_issuer,
)

MULTI_TENANT_AUTHORITIES = ("common", "organizations")
OIDC_SCOPES = ("openid", "profile", "email", "offline_access")
USER_GRANT_TYPES = ("authorization_code", "refresh_token")
RESPONSE_MODES = ("query", "fragment", "form_post")
CODE_CHALLENGE_METHODS = ("S256", "plain")
PROMPTS = ("login", "none", "consent", "select_account", "create")

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
# Business Central's delegated permissions (what "API.ReadWrite.All" is for apps).
BUSINESS_CENTRAL_DELEGATED = ("Financials.ReadWrite.All", "user_impersonation")

FLOW_TOKEN_LIFETIME_SECONDS = 3600
REFRESH_TOKEN_INACTIVITY_SECONDS = 90 * 24 * 3600
SESSION_COOKIE = "hub_sandbox_session"
_PKCE_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_GRAPH_PERMISSION = re.compile(r"^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z0-9]+)*$")


def clock() -> float:
    """Seconds since the epoch for everything sign-in decides (tests move it)."""
    return time.time()


# ---------------------------------------------------------------------------------------
# Authorities, redirect URIs and scopes
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Authority:
    """The first path segment of an Entra URL: ``common``, ``organizations`` or a tenant."""

    segment: str  # as routes should name it: "common", "organizations" or the tenant GUID
    directory: Directory | None  # None for common and organizations

    @property
    def label(self) -> str:
        return self.directory.display_name if self.directory else self.segment


def resolve_authority(state: SandboxState, reference: str) -> Authority:
    folded = reference.strip().casefold()
    if folded in MULTI_TENANT_AUTHORITIES:
        return Authority(segment=folded, directory=None)
    directory = state.directories.find(reference)
    if directory is None:
        raise tenant_not_found(reference)
    return Authority(segment=str(directory.id), directory=directory)


def _is_loopback_http(parts: SplitResult) -> bool:
    return bool(parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"))


def is_registered_redirect_uri(uri: str, registered: tuple[str, ...]) -> bool:
    """Exact match, except that an http loopback URI matches on any port, as Entra
    ignores the port of loopback redirect URIs (RFC 8252 §7.3)."""
    if uri in registered:
        return True
    try:
        asked = urlsplit(uri)
        asked_port = asked.port
    except ValueError:
        return False
    if not _is_loopback_http(asked) or asked.fragment or asked_port == 0:
        return False
    for candidate in registered:
        known = urlsplit(candidate)
        if (
            _is_loopback_http(known)
            and known.hostname == asked.hostname
            and known.path == asked.path
            and known.query == asked.query
        ):
            return True
    return False


def is_registered_logout_uri(uri: str, registered: tuple[str, ...]) -> bool:
    """A post-logout redirect URI is accepted if its origin is a registered redirect URI's
    origin (loopback origins on any port)."""
    try:
        asked = urlsplit(uri)
        asked_port = asked.port
    except ValueError:
        return False
    if asked.scheme not in ("http", "https") or not asked.hostname:
        return False
    for candidate in registered:
        known = urlsplit(candidate)
        if known.scheme != asked.scheme or known.hostname != asked.hostname:
            continue
        if _is_loopback_http(known) or known.port == asked_port:
            return True
    return False


@dataclass(frozen=True)
class Resource:
    uri: str  # how scopes name it
    app_id: str
    audience: str  # the aud of its (v1.0) access tokens
    default_permissions: tuple[str, ...]


BUSINESS_CENTRAL = Resource(
    uri=BUSINESS_CENTRAL_RESOURCE,
    app_id=BUSINESS_CENTRAL_APP_ID,
    audience=BUSINESS_CENTRAL_RESOURCE,
    default_permissions=BUSINESS_CENTRAL_DELEGATED,
)
GRAPH = Resource(uri=GRAPH_RESOURCE, app_id=GRAPH_APP_ID, audience=GRAPH_APP_ID, default_permissions=("User.Read",))
_RESOURCES_BY_NAME = {
    BUSINESS_CENTRAL_RESOURCE: BUSINESS_CENTRAL,
    BUSINESS_CENTRAL_APP_ID: BUSINESS_CENTRAL,
    GRAPH_RESOURCE: GRAPH,
    GRAPH_APP_ID: GRAPH,
}


@dataclass(frozen=True)
class Scopes:
    """A scope parameter, split into OpenID Connect scopes and resource permissions."""

    oidc: frozenset[str]
    resources: tuple[tuple[Resource, tuple[str, ...]], ...]  # in the order first named


def parse_scopes(text: str, *, app_name: str, tenant_label: str) -> Scopes:
    oidc: set[str] = set()
    permissions: dict[str, list[str]] = {}
    resources: dict[str, Resource] = {}
    for scope in text.split():
        if scope in OIDC_SCOPES:
            oidc.add(scope)
            continue
        if "/" in scope:
            name, _, permission = scope.rstrip("/").rpartition("/")
            resource = _RESOURCES_BY_NAME.get(name.rstrip("/").casefold())
            if resource is None:
                raise EntraError(
                    400,
                    "invalid_resource",
                    500011,
                    f"The resource principal named {name} was not found in the tenant named"
                    f" {tenant_label}. This can happen if the application has not been installed"
                    " by the administrator of the tenant or consented to by any user in the"
                    " tenant. You might have sent your authentication request to the wrong tenant.",
                )
        else:  # a bare permission is Microsoft Graph's
            resource, permission = GRAPH, scope
        if permission == ".default":
            granted = list(resource.default_permissions)
        elif _is_permission_of(resource, permission):
            granted = [permission]
        else:
            raise EntraError(
                400,
                "invalid_client",
                650053,
                f"The application '{app_name}' asked for scope '{permission}' that doesn't exist"
                f" on the resource '{resource.app_id}'. Contact the app vendor.",
            )
        resources.setdefault(resource.uri, resource)
        listed = permissions.setdefault(resource.uri, [])
        listed.extend(p for p in granted if p not in listed)
    return Scopes(
        oidc=frozenset(oidc),
        resources=tuple((resources[uri], tuple(listed)) for uri, listed in permissions.items()),
    )


def _is_permission_of(resource: Resource, permission: str) -> bool:
    if resource is BUSINESS_CENTRAL:
        return permission in BUSINESS_CENTRAL_DELEGATED
    return _GRAPH_PERMISSION.match(permission) is not None


# ---------------------------------------------------------------------------------------
# The authorize request
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthorizationRequest:
    """A checked authorize request (also what the sign-in form's flowToken carries)."""

    authority: str  # Authority.segment
    client_id: str
    redirect_uri: str
    response_mode: str
    scope: str
    state: str | None = None
    nonce: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    prompt: str | None = None
    login_hint: str | None = None
    max_age: int | None = None
    client_info: bool = False

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.scope.split())


@dataclass(frozen=True)
class ErrorRedirect:
    """Where an authorize error goes once the redirect URI is known to be the app's."""

    redirect_uri: str
    response_mode: str
    state: str | None


class AuthorizeError(Exception):
    """An authorize request refused: shown on a page (``redirect`` None) or sent back."""

    def __init__(self, error: EntraError, redirect: ErrorRedirect | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.redirect = redirect


def read_authorization_request(
    state: SandboxState, authority: Authority, params: Mapping[str, str]
) -> AuthorizationRequest:
    """Check an authorize request in Entra's order; raise :class:`AuthorizeError`."""
    settings = state.settings
    client_id = params.get("client_id", "").strip()
    if not client_id:
        raise AuthorizeError(missing_parameter("client_id"))
    if client_id.casefold() != settings.entra_client_id.casefold():
        raise AuthorizeError(application_not_found(client_id, authority.label))
    redirect_uri = params.get("redirect_uri", "").strip()
    if not redirect_uri:
        raise AuthorizeError(EntraError(400, "invalid_request", 900971, "No reply address provided."))
    if not is_registered_redirect_uri(redirect_uri, settings.redirect_uris):
        raise AuthorizeError(
            EntraError(
                400,
                "invalid_request",
                50011,
                f"The redirect URI '{redirect_uri}' specified in the request does not match the"
                f" redirect URIs configured for the application '{settings.entra_client_id}'. Make"
                " sure the redirect URI sent in the request matches one added to your application"
                " in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn"
                " more about how to fix this.",
            )
        )

    # From here on errors go back to the app.
    response_mode = params.get("response_mode") or "query"
    back = ErrorRedirect(
        redirect_uri,
        response_mode if response_mode in RESPONSE_MODES else "query",
        params.get("state"),
    )

    def refuse(error: EntraError) -> AuthorizeError:
        return AuthorizeError(error, back)

    if response_mode not in RESPONSE_MODES:
        raise refuse(
            EntraError(400, "invalid_request", 90023, f"The response_mode '{response_mode}' is not supported.")
        )
    response_type = params.get("response_type", "")
    if not response_type:
        raise refuse(missing_parameter("response_type"))
    if response_type.split() != ["code"]:
        raise refuse(
            EntraError(
                400,
                "unsupported_response_type",
                700051,
                f"response_type '{response_type}' is not enabled for the application.",
            )
        )
    scope = params.get("scope", "").strip()
    if not scope:
        raise refuse(missing_parameter("scope"))
    try:
        parse_scopes(scope, app_name=settings.sandbox_app_name, tenant_label=authority.label)
    except EntraError as error:
        raise refuse(error) from error

    challenge = params.get("code_challenge") or None
    method = params.get("code_challenge_method") or None
    if challenge is None and method is not None:
        raise refuse(missing_parameter("code_challenge"))
    if challenge is not None:
        method = method or "plain"  # RFC 7636: no method means plain
        if method not in CODE_CHALLENGE_METHODS:
            raise refuse(
                EntraError(
                    400,
                    "invalid_request",
                    90023,
                    f"The code_challenge_method '{method}' is not supported. Use 'S256' or 'plain'.",
                )
            )
        if not 43 <= len(challenge) <= 128:
            raise refuse(EntraError(400, "invalid_request", 501491, "Invalid size of Code_Challenge parameter."))

    prompt = params.get("prompt") or None
    if prompt is not None and prompt not in PROMPTS:
        raise refuse(EntraError(400, "invalid_request", 90023, f"Invalid value '{prompt}' for the parameter 'prompt'."))
    max_age_text = params.get("max_age")
    max_age: int | None = None
    if max_age_text:
        try:
            max_age = max(0, int(max_age_text))
        except ValueError:
            raise refuse(
                EntraError(400, "invalid_request", 90023, f"Invalid value '{max_age_text}' for 'max_age'.")
            ) from None
    return AuthorizationRequest(
        authority=authority.segment,
        client_id=settings.entra_client_id,
        redirect_uri=redirect_uri,
        response_mode=response_mode,
        scope=scope,
        state=params.get("state"),
        nonce=params.get("nonce") or None,
        code_challenge=challenge,
        code_challenge_method=method if challenge else None,
        prompt=prompt,
        login_hint=(params.get("login_hint") or "").strip() or None,
        max_age=max_age,
        client_info=params.get("client_info") == "1",
    )


def authorize_error_parameters(
    error: EntraError, redirect: ErrorRedirect, *, base_url: str, trace_id: str
) -> dict[str, str]:
    parameters = {
        "error": error.error,
        "error_description": describe(error.message, trace_id=trace_id, correlation_id=str(uuid.uuid4())),
        "error_uri": error.error_uri(base_url),
    }
    if redirect.state is not None:
        parameters["state"] = redirect.state
    return parameters


def with_parameters(redirect_uri: str, response_mode: str, parameters: Mapping[str, str]) -> str:
    """The redirect URI carrying the response, in the query or the fragment."""
    parts = urlsplit(redirect_uri)
    encoded = urlencode(parameters)
    if response_mode == "fragment":
        return urlunsplit(parts._replace(fragment=encoded))
    query = f"{parts.query}&{encoded}" if parts.query else encoded
    return urlunsplit(parts._replace(query=query))


# ---------------------------------------------------------------------------------------
# The sign-in form's flow token and the single sign-on session
# ---------------------------------------------------------------------------------------


def _seal(state: SandboxState, purpose: str, payload: dict[str, Any]) -> str:
    body = base64url(json.dumps(payload, separators=(",", ":")).encode())
    mac = hmac.new(state.token_issuer.derive_secret(purpose), body.encode(), hashlib.sha256).digest()
    return f"{body}.{base64url(mac)}"


def _unseal(state: SandboxState, purpose: str, sealed: str) -> dict[str, Any] | None:
    body, _, mac = sealed.partition(".")
    expected = base64url(hmac.new(state.token_issuer.derive_secret(purpose), body.encode(), hashlib.sha256).digest())
    if not body or not hmac.compare_digest(mac.encode(), expected.encode()):
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def seal_flow(state: SandboxState, request: AuthorizationRequest) -> str:
    """The sign-in form's hidden ``flowToken``: the checked request, signed and dated, so
    the POST cannot change what the app asked for."""
    return _seal(state, "flow-token", {"request": asdict(request), "iat": int(clock())})


def open_flow(state: SandboxState, flow_token: str) -> AuthorizationRequest:
    payload = _unseal(state, "flow-token", flow_token) if flow_token else None
    if payload is None:
        raise AuthorizeError(EntraError(400, "invalid_request", 90100, "flowToken parameter is empty or not valid."))
    if clock() - float(payload.get("iat", 0)) > FLOW_TOKEN_LIFETIME_SECONDS:
        raise AuthorizeError(
            EntraError(
                400,
                "invalid_request",
                50089,
                "Authentication failed due to flow token expired. Sign in again from the application.",
            )
        )
    try:
        return AuthorizationRequest(**payload["request"])
    except (KeyError, TypeError) as error:
        raise AuthorizeError(
            EntraError(400, "invalid_request", 90100, "flowToken parameter is empty or not valid.")
        ) from error


@dataclass(frozen=True)
class Session:
    """The browser's single sign-on session (Entra's ESTSAUTH cookie)."""

    email: str
    session_id: str
    auth_time: int


def seal_session(state: SandboxState, session: Session) -> str:
    return _seal(state, "session", asdict(session))


def open_session(state: SandboxState, cookie: str | None) -> Session | None:
    payload = _unseal(state, "session", cookie) if cookie else None
    if payload is None:
        return None
    try:
        return Session(**payload)
    except TypeError:
        return None


def single_sign_on(request: AuthorizationRequest, session: Session | None) -> Session | None:
    """The session to sign in with, silently, or None when the page must ask."""
    if session is None or request.prompt in ("login", "select_account", "create"):
        return None
    if request.login_hint and request.login_hint.casefold() != session.email.casefold():
        return None
    if request.max_age is not None and clock() - session.auth_time > request.max_age:
        return None
    return session


def login_required(request: AuthorizationRequest) -> AuthorizeError:
    return AuthorizeError(
        EntraError(
            400,
            "login_required",
            50058,
            "A silent sign-in request was sent but no user is signed in.",
        ),
        ErrorRedirect(request.redirect_uri, request.response_mode, request.state),
    )


# ---------------------------------------------------------------------------------------
# Signing in: the code
# ---------------------------------------------------------------------------------------


def signed_in_directory(state: SandboxState, request: AuthorizationRequest, user: SandboxUser) -> Directory:
    """The tenant a sign-in lands in: the user's own at common/organizations, else the
    authority's (a guest there if it is not the user's)."""
    if request.authority in MULTI_TENANT_AUTHORITIES:
        return user.home
    directory = state.directories.find(request.authority)
    return directory or user.home


def is_tenant_administrator(user: SandboxUser, tenant: SandboxTenant) -> bool:
    """Each sandbox tenant has one administrator, admin@{its domain}."""
    return user.email.casefold() == f"admin@{tenant.domain}".casefold()


def user_for(state: SandboxState, email: str) -> SandboxUser:
    return SandboxUser(email=email, home=state.directories.for_domain(email.rsplit("@", 1)[1]))


def sign_in(
    state: SandboxState, request: AuthorizationRequest, session: Session
) -> tuple[AuthorizationGrant, dict[str, str]]:
    """Make the authorization code and the parameters that carry it back to the app."""
    now = clock()
    user = user_for(state, session.email)
    grant = AuthorizationGrant(
        code=f"1.A{base64url(secrets.token_bytes(96))}",
        client_id=request.client_id,
        redirect_uri=request.redirect_uri,
        scopes=request.scopes,
        nonce=request.nonce,
        code_challenge=request.code_challenge,
        code_challenge_method=request.code_challenge_method,
        user=user,
        tenant=signed_in_directory(state, request, user),
        authority=request.authority,
        auth_time=session.auth_time,
        issued_at=now,
        expires_at=now + state.settings.sandbox_authorization_code_lifetime_seconds,
        max_age_requested=request.max_age is not None,
        session_id=session.session_id,
    )
    state.authorization_codes.add(grant, now)
    consenting_for = grant.tenant.sandbox_tenant
    if request.prompt == "consent" and consenting_for is not None and is_tenant_administrator(user, consenting_for):
        # Entra's consent screen lets an administrator consent for the whole organisation:
        # the app then has its service principal (admin consent) in the tenant.
        state.set_consent(consenting_for, True)
    parameters = {"code": grant.code}
    if request.client_info:
        parameters["client_info"] = client_info(user)
    if request.state is not None:
        parameters["state"] = request.state
    parameters["session_state"] = session.session_id
    return grant, parameters


def client_info(user: SandboxUser) -> str:
    """msal's home account: the user's object id and home tenant, base64url JSON."""
    info = {"uid": str(user.home_object_id), "utid": str(user.home.id)}
    return base64url(json.dumps(info, separators=(",", ":")).encode())


# ---------------------------------------------------------------------------------------
# The token endpoint's user grants
# ---------------------------------------------------------------------------------------


def _invalid_grant(code: int, description: str) -> EntraError:
    return EntraError(400, "invalid_grant", code, description)


def _authenticate_client(state: SandboxState, authority: Authority, credentials: ClientCredentials) -> str:
    """The app's client id, once its id and secret check out (confidential clients only)."""
    if not credentials.client_id:
        raise missing_parameter("client_id")
    expected_id = state.settings.entra_client_id
    if credentials.client_id.casefold() != expected_id.casefold():
        raise application_not_found(credentials.client_id, authority.label)
    if not credentials.client_secret:
        raise EntraError(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )
    expected_secret = state.settings.entra_client_secret.get_secret_value()
    if not expected_secret or not hmac.compare_digest(credentials.client_secret.encode(), expected_secret.encode()):
        raise invalid_client_secret(expected_id)
    return expected_id


def user_token(
    state: SandboxState,
    tenant_reference: str,
    form: Mapping[str, str],
    credentials: ClientCredentials,
    *,
    base_url: str,
) -> dict[str, Any]:
    """Decide an ``authorization_code`` or ``refresh_token`` request; the JSON answer."""
    authority = resolve_authority(state, tenant_reference)
    client_id = _authenticate_client(state, authority, credentials)
    if credentials.grant_type == "authorization_code":
        return _redeem_code(state, authority, client_id, form, base_url=base_url)
    return _redeem_refresh_token(state, authority, client_id, form, base_url=base_url)


def _redeem_code(
    state: SandboxState, authority: Authority, client_id: str, form: Mapping[str, str], *, base_url: str
) -> dict[str, Any]:
    code = form.get("code", "")
    if not code:
        raise missing_parameter("code")
    found = state.authorization_codes.look_up(code)
    if found is None:
        raise _invalid_grant(70000, "The provided value for the 'code' parameter is not valid.")
    grant, redeemed = found
    if redeemed:
        raise _invalid_grant(
            54005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or"
            " use an existing refresh token.",
        )
    if clock() > grant.expires_at:
        raise _invalid_grant(
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a"
            " new interactive authorization request for this user and resource.",
        )
    if grant.client_id.casefold() != client_id.casefold():
        raise _invalid_grant(70000, "The provided value for the 'code' parameter is not valid.")
    if authority.directory is not None and authority.directory.id != grant.tenant.id:
        raise _invalid_grant(
            700005,
            "Provided Authorization Code is intended to use against other tenant, thus rejected.",
        )
    redirect_uri = form.get("redirect_uri", "")
    if not redirect_uri:
        raise missing_parameter("redirect_uri")
    if redirect_uri != grant.redirect_uri:
        raise EntraError(
            400,
            "invalid_client",
            500112,
            f"The reply address '{redirect_uri}' does not match the reply address"
            f" '{grant.redirect_uri}' provided when requesting Authorization code.",
        )
    _check_pkce(grant, form.get("code_verifier"))

    scope_text = form.get("scope") or " ".join(grant.scopes)
    scopes = _single_resource(state, authority, scope_text)
    if not state.authorization_codes.redeem(code):
        raise _invalid_grant(
            54005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or"
            " use an existing refresh token.",
        )
    return _token_response(
        state,
        user=grant.user,
        tenant=grant.tenant,
        client_id=client_id,
        scopes=scopes,
        granted=" ".join(dict.fromkeys(grant.scopes + tuple(scope_text.split()))),
        nonce=grant.nonce,
        auth_time=grant.auth_time if grant.max_age_requested else None,
        session_id=grant.session_id,
        client_info_requested=form.get("client_info") == "1",
        base_url=base_url,
    )


def _check_pkce(grant: AuthorizationGrant, verifier: str | None) -> None:
    if grant.code_challenge is None:
        if verifier:
            raise _invalid_grant(
                50148,
                "The code_verifier does not match the code_challenge supplied in the authorization request for PKCE.",
            )
        return
    if verifier and _PKCE_VERIFIER.match(verifier):
        if grant.code_challenge_method == "S256":
            computed = base64url(hashlib.sha256(verifier.encode("ascii")).digest())
        else:
            computed = verifier
        if hmac.compare_digest(computed.encode(), grant.code_challenge.encode()):
            return
    raise _invalid_grant(
        501481,
        "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
    )


def _single_resource(state: SandboxState, authority: Authority, scope_text: str) -> Scopes:
    scopes = parse_scopes(scope_text, app_name=state.settings.sandbox_app_name, tenant_label=authority.label)
    if len(scopes.resources) > 1:
        raise EntraError(
            400,
            "invalid_scope",
            28000,
            "Provided value for the input parameter scope is not valid because it contains more"
            f" than one resource. Scope {scope_text} is not valid.",
        )
    return scopes


def _redeem_refresh_token(
    state: SandboxState, authority: Authority, client_id: str, form: Mapping[str, str], *, base_url: str
) -> dict[str, Any]:
    sealed = form.get("refresh_token", "")
    if not sealed:
        raise missing_parameter("refresh_token")
    fernet = _refresh_token_sealer(state)
    malformed = _invalid_grant(9002313, "Invalid request. Request is malformed or invalid.")
    try:
        issued_at = fernet.extract_timestamp(sealed.encode())
        payload = json.loads(fernet.decrypt(sealed.encode()))
        email, tenant_id, granted = str(payload["email"]), uuid.UUID(str(payload["tid"])), str(payload["scp"])
        token_client, session_id = str(payload["cid"]), str(payload.get("sid", ""))
    except (InvalidToken, ValueError, KeyError, TypeError):
        raise malformed from None
    if token_client.casefold() != client_id.casefold():
        raise malformed
    if clock() - issued_at > REFRESH_TOKEN_INACTIVITY_SECONDS:
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(issued_at))
        raise _invalid_grant(
            700082,
            f"The refresh token has expired due to inactivity. The token was issued on {issued}"
            " and was inactive for 90.00:00:00.",
        )
    user = user_for(state, email)
    if authority.directory is not None:
        tenant = authority.directory  # refresh tokens work across the tenants the user can enter
    else:
        tenant = state.directories.find(str(tenant_id)) or user.home
    scope_text = form.get("scope") or granted
    scopes = _single_resource(state, authority, scope_text)
    return _token_response(
        state,
        user=user,
        tenant=tenant,
        client_id=client_id,
        scopes=scopes,
        granted=" ".join(dict.fromkeys(granted.split() + scope_text.split())),
        nonce=None,
        auth_time=None,
        session_id=session_id,
        client_info_requested=form.get("client_info") == "1",
        base_url=base_url,
    )


def _refresh_token_sealer(state: SandboxState) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(state.token_issuer.derive_secret("refresh-token")))


def _token_response(
    state: SandboxState,
    *,
    user: SandboxUser,
    tenant: Directory,
    client_id: str,
    scopes: Scopes,
    granted: str,
    nonce: str | None,
    auth_time: int | None,
    session_id: str,
    client_info_requested: bool,
    base_url: str,
) -> dict[str, Any]:
    now = int(clock())
    lifetime = int(ACCESS_TOKEN_LIFETIME.total_seconds())
    if scopes.resources:
        resource, permissions = scopes.resources[0]
        scope_answer = [f"{resource.uri}/{permission}" for permission in permissions]
    else:  # OpenID Connect only: Entra issues a Microsoft Graph token for User.Read
        resource, permissions = GRAPH, GRAPH.default_permissions
        scope_answer = []
    if resource is GRAPH:
        oidc_listed = [scope for scope in ("openid", "profile", "email") if scope in scopes.oidc]
        scope_answer = oidc_listed + [f"{GRAPH_RESOURCE}/{permission}" for permission in permissions]
    guest = tenant.id != user.home.id
    object_id = user.object_id(tenant.id)
    common = {
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "aio": base64url(secrets.token_bytes(48)),
        "oid": str(object_id),
        "rh": f"1.A{base64url(secrets.token_bytes(40))}.",
        "tid": str(tenant.id),
        "uti": base64url(secrets.token_bytes(16)),
    }
    access_claims: dict[str, Any] = {
        **common,
        "aud": resource.audience,
        "iss": v1_issuer(tenant.id),
        "acr": "1",
        "amr": ["pwd"],
        "app_displayname": state.settings.sandbox_app_name,
        "appid": client_id,
        "appidacr": "1",
        "family_name": user.family_name,
        "given_name": user.given_name,
        "idtyp": "user",
        "ipaddr": "127.0.0.1",
        "name": user.name,
        "scp": " ".join(_delegated_scopes(resource, permissions, scopes)),
        "sub": _pairwise_subject(resource.app_id, object_id),
        "unique_name": user.email,
        "upn": user.email,
        "ver": "1.0",
    }
    if guest:
        access_claims["idp"] = v1_issuer(user.home.id)
        access_claims["email"] = user.email
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "scope": " ".join(scope_answer),
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": state.token_issuer.sign(access_claims),
    }
    if "offline_access" in scopes.oidc:
        payload = {"cid": client_id, "email": user.email, "tid": str(tenant.id), "scp": granted, "sid": session_id}
        sealed = _refresh_token_sealer(state).encrypt_at_time(json.dumps(payload).encode(), now)
        body["refresh_token"] = sealed.decode()
    if "openid" in scopes.oidc:
        id_claims: dict[str, Any] = {
            **common,
            "aud": client_id,
            "iss": f"{base_url}/{tenant.id}/v2.0",
            "sub": _pairwise_subject(client_id, object_id),
            "ver": "2.0",
        }
        if "profile" in scopes.oidc:
            id_claims["name"] = user.name
            id_claims["preferred_username"] = user.email
        if "email" in scopes.oidc:
            id_claims["email"] = user.email
        if guest:
            id_claims["idp"] = v1_issuer(user.home.id)
        if nonce is not None:
            id_claims["nonce"] = nonce
        if auth_time is not None:
            id_claims["auth_time"] = auth_time
        if session_id:
            id_claims["sid"] = session_id
        body["id_token"] = state.token_issuer.sign(id_claims)
    if client_info_requested:
        body["client_info"] = client_info(user)
    return body


def _delegated_scopes(resource: Resource, permissions: tuple[str, ...], scopes: Scopes) -> list[str]:
    """The scp of an access token: the resource's permissions (Graph also lists the
    OpenID Connect scopes, as Entra's Graph tokens do)."""
    if resource is GRAPH:
        return sorted(scopes.oidc - {"offline_access"}) + list(permissions)
    return list(permissions)


def _pairwise_subject(audience: str, object_id: uuid.UUID) -> str:
    """Entra's sub: unique per user and per app (or resource), not the object id."""
    return base64url(hashlib.sha256(f"{audience.casefold()}/{object_id}".encode()).digest())
