"""Entra ID stand-in: OIDC discovery, JWKS and the v2.0 token endpoint.

Paths copy login.microsoftonline.com exactly (no prefix), because msal takes the tenant
from the first path segment of the authority:

- ``GET  /{tenant}/v2.0/.well-known/openid-configuration``
- ``GET  /{tenant}/discovery/v2.0/keys`` (and the v1 ``/{tenant}/discovery/keys``)
- ``POST /{tenant}/oauth2/v2.0/token`` with ``grant_type=client_credentials``

``{tenant}`` is a tenant GUID or its ``*.onmicrosoft.com`` domain. Errors use Entra's
JSON shape and AADSTS codes; the decision logic (:func:`client_credentials_grant`) has
no web framework in it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from hub_common.logging import get_logger
from hub_sandbox.faults import FaultKind
from hub_sandbox.state import SandboxState
from hub_sandbox.tenants import SandboxTenant
from hub_sandbox.tokens import (
    BUSINESS_CENTRAL_APP_ID,
    BUSINESS_CENTRAL_RESOURCE,
    IssuedToken,
)

log = get_logger(__name__)

DEFAULT_SCOPE_SUFFIX = "/.default"
_KNOWN_RESOURCES = {
    BUSINESS_CENTRAL_RESOURCE: BUSINESS_CENTRAL_RESOURCE,
    f"{BUSINESS_CENTRAL_RESOURCE}/": BUSINESS_CENTRAL_RESOURCE,
    BUSINESS_CENTRAL_APP_ID: BUSINESS_CENTRAL_APP_ID,
}
_CLAIMS_SUPPORTED = (
    "sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
    "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username",
    "name", "tid", "ver", "at_hash", "c_hash", "email",
)  # fmt: skip
_NO_CACHE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}


@dataclass(frozen=True)
class EntraError(Exception):
    """An error answer of Entra's token or discovery endpoints."""

    status: int
    error: str
    code: int  # the AADSTS number
    description: str  # the text after "AADSTSnnnn: "

    def body(self, *, base_url: str, correlation_id: str, trace_id: str) -> dict[str, Any]:
        timestamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return {
            "error": self.error,
            "error_description": (
                f"AADSTS{self.code}: {self.description}\r\nTrace ID: {trace_id}"
                f"\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}"
            ),
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"{base_url}/error?code={self.code}",
        }


def tenant_not_found(reference: str, *, error: str = "invalid_request") -> EntraError:
    return EntraError(
        400,
        error,
        90002,
        f"Tenant '{reference}' not found. Check to make sure you have the correct tenant ID"
        " and are signing into the correct cloud. Check with your subscription administrator,"
        " this may happen if there are no active subscriptions for the tenant.",
    )


def _missing_parameter(name: str) -> EntraError:
    return EntraError(
        400,
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{name}'.",
    )


@dataclass(frozen=True)
class ClientCredentials:
    """The parts of a token request that matter, from the form body or Basic auth."""

    grant_type: str | None
    client_id: str | None
    client_secret: str | None
    scope: str | None


def read_token_request(form: Mapping[str, str], authorization: str | None) -> ClientCredentials:
    client_id = form.get("client_id")
    client_secret = form.get("client_secret")
    # client_secret_basic: Entra accepts the credentials in an Authorization header too.
    if authorization and authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:].strip()).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        basic_id, _, basic_secret = decoded.partition(":")
        client_id = client_id or unquote_plus(basic_id) or None
        client_secret = client_secret or unquote_plus(basic_secret) or None
    return ClientCredentials(
        grant_type=form.get("grant_type"),
        client_id=client_id,
        client_secret=client_secret,
        scope=form.get("scope"),
    )


def client_credentials_grant(state: SandboxState, tenant_reference: str, request: ClientCredentials) -> IssuedToken:
    """Decide a client-credentials request the way Entra does, in Entra's order:
    tenant, request shape, the app's presence in the tenant, its secret, then the scope."""
    tenant = state.catalogue.find(tenant_reference)
    if tenant is None:
        raise tenant_not_found(tenant_reference)
    if not request.grant_type:
        raise _missing_parameter("grant_type")
    if request.grant_type != "client_credentials":
        raise EntraError(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{request.grant_type}'.",
        )
    if not request.client_id:
        raise _missing_parameter("client_id")

    expected_id = state.settings.entra_client_id
    known_app = request.client_id.casefold() == expected_id.casefold()
    withdrawn = known_app and state.faults.take(tenant.id, FaultKind.CONSENT_WITHDRAWN) is not None
    if not known_app or not state.is_consented(tenant) or withdrawn:
        # A multi-tenant app without admin consent has no service principal in the client's
        # tenant, so Entra answers as if the app did not exist there.
        raise EntraError(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{request.client_id}' was not found in the"
            f" directory '{tenant.display_name}'. This can happen if the application has not"
            " been installed by the administrator of the tenant or consented to by any user"
            " in the tenant. You may have sent your authentication request to the wrong"
            " tenant.",
        )
    if not request.client_secret:
        raise EntraError(
            401,
            "invalid_client",
            7000216,
            "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
        )
    expected_secret = state.settings.entra_client_secret.get_secret_value()
    if not expected_secret or not hmac.compare_digest(request.client_secret.encode(), expected_secret.encode()):
        raise EntraError(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is"
            " the client secret value, not the client secret ID, for a secret added to app"
            f" '{expected_id}'.",
        )

    if not request.scope:
        raise _missing_parameter("scope")
    audience = _audience_of(request.scope, tenant)
    return state.token_issuer.issue_app_token(
        tenant_id=tenant.id,
        client_id=expected_id,
        service_principal_id=state.service_principal_id(tenant),
        # Entra sets aud to the resource as the scope named it (App ID URI or app id).
        audience=audience,
    )


def _audience_of(scope: str, tenant: SandboxTenant) -> str:
    """The resource of a client-credentials scope: exactly one ``{resource}/.default``."""
    scopes = scope.split()
    if len(scopes) != 1 or not scopes[0].endswith(DEFAULT_SCOPE_SUFFIX):
        raise EntraError(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must"
            " have a scope value with /.default suffixed to the resource identifier"
            " (application ID URI).",
        )
    resource = scopes[0][: -len(DEFAULT_SCOPE_SUFFIX)]
    if resource not in _KNOWN_RESOURCES:
        raise EntraError(
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {resource} was not found in the tenant named"
            f" {tenant.display_name}. This can happen if the application has not been"
            " installed by the administrator of the tenant or consented to by any user in the"
            " tenant. You might have sent your authentication request to the wrong tenant.",
        )
    return _KNOWN_RESOURCES[resource]


def openid_configuration(base_url: str, tenant: SandboxTenant) -> dict[str, Any]:
    """Entra's v2.0 discovery document; endpoints name the tenant by GUID even when it was
    asked for by domain, as Entra does."""
    root = f"{base_url}/{tenant.id}"
    return {
        "token_endpoint": f"{root}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{root}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{root}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
        "claims_supported": list(_CLAIMS_SUPPORTED),
        "kerberos_endpoint": f"{root}/kerberos",
        "tenant_region_scope": tenant.locale.entra_region,
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }


# ---------------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------------


def identity_router(state: SandboxState) -> APIRouter:
    router = APIRouter(tags=["Entra ID"])

    @router.get("/{tenant}/v2.0/.well-known/openid-configuration")
    async def discovery(tenant: str, request: Request) -> JSONResponse:
        found = state.catalogue.find(tenant)
        if found is None:
            return _error_response(request, tenant_not_found(tenant, error="invalid_tenant"))
        return JSONResponse(openid_configuration(_base_url(request), found))

    @router.get("/{tenant}/discovery/v2.0/keys")
    @router.get("/{tenant}/discovery/keys")
    async def keys(tenant: str, request: Request) -> JSONResponse:
        # One signing key for every tenant, like Entra's shared keys; "common" works too.
        found = state.catalogue.find(tenant)
        tenant_segment = str(found.id) if found else "{tenantid}"
        issuer = f"{_base_url(request)}/{tenant_segment}/v2.0"
        return JSONResponse(state.token_issuer.jwks(issuer))

    @router.post("/{tenant}/oauth2/v2.0/token")
    async def token(tenant: str, request: Request) -> JSONResponse:
        body = (await request.body()).decode("utf-8", errors="replace")
        form = dict(parse_qsl(body, keep_blank_values=True))
        credentials = read_token_request(form, request.headers.get("authorization"))
        try:
            issued = client_credentials_grant(state, tenant, credentials)
        except EntraError as error:
            log.info(
                "token request refused",
                tenant=tenant,
                client_id=credentials.client_id,
                aadsts=error.code,
            )
            return _error_response(request, error)
        log.info("token issued", tenant=tenant, client_id=credentials.client_id)
        return JSONResponse(
            {
                "token_type": "Bearer",
                "expires_in": issued.expires_in,
                "ext_expires_in": issued.expires_in,
                "access_token": issued.access_token,
            },
            headers=_NO_CACHE | _request_id_headers(request),
        )

    return router


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _request_id_headers(request: Request) -> dict[str, str]:
    headers = {"x-ms-request-id": str(uuid.uuid4())}
    client_request_id = request.headers.get("client-request-id")
    if client_request_id:
        headers["client-request-id"] = client_request_id
    return headers


def _error_response(request: Request, error: EntraError) -> JSONResponse:
    headers = _NO_CACHE | _request_id_headers(request)
    # Entra reports the caller's client-request-id (msal sends one) as the correlation id.
    correlation_id = request.headers.get("client-request-id") or str(uuid.uuid4())
    body = error.body(
        base_url=_base_url(request),
        correlation_id=correlation_id,
        trace_id=headers["x-ms-request-id"],
    )
    return JSONResponse(body, status_code=error.status, headers=headers)
