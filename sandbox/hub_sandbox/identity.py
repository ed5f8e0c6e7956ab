"""Entra ID stand-in: OIDC discovery, JWKS and the v2.0 token endpoint.

Paths copy login.microsoftonline.com exactly (no prefix), because msal takes the tenant
from the first path segment of the authority:

- ``GET  /{tenant}/v2.0/.well-known/openid-configuration``
- ``GET  /{tenant}/discovery/v2.0/keys`` (and the v1 ``/{tenant}/discovery/keys``)
- ``POST /{tenant}/oauth2/v2.0/token`` with ``grant_type=client_credentials``, or the
  user grants ``authorization_code`` and ``refresh_token`` (:mod:`hub_sandbox.sign_in`)

``{tenant}`` is a tenant GUID or its ``*.onmicrosoft.com`` domain; discovery and the user
grants also take ``common`` and ``organizations`` and the directories users signed in
from. Errors use Entra's JSON shape and AADSTS codes; the decision logic
(:func:`client_credentials_grant`) has no web framework in it.
"""

from __future__ import annotations

import hmac
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from hub_common.logging import get_logger
from hub_sandbox.entra import (
    NO_CACHE,
    ClientCredentials,
    EntraError,
    application_not_found,
    base_url,
    error_response,
    invalid_client_secret,
    missing_parameter,
    read_token_request,
    request_id_headers,
    tenant_not_a_name,
    tenant_not_found,
)
from hub_sandbox.faults import FaultKind
from hub_sandbox.sign_in import USER_GRANT_TYPES, Authority, resolve_authority, user_token
from hub_sandbox.state import SandboxState
from hub_sandbox.tenants import SandboxTenant
from hub_sandbox.tokens import (
    BUSINESS_CENTRAL_APP_ID,
    BUSINESS_CENTRAL_RESOURCE,
    IssuedToken,
)

__all__ = [
    "ClientCredentials",
    "EntraError",
    "client_credentials_grant",
    "identity_router",
    "openid_configuration",
    "read_token_request",
    "tenant_not_found",
]

log = get_logger(__name__)

# The ``entra_not_json`` fault's answer: a page, as a proxy or an outage screen would send.
ENTRA_OUTAGE_PAGE = (
    "<!DOCTYPE html><html><head><title>Service unavailable</title></head>"
    "<body><h1>Sign-in is temporarily unavailable</h1><p>Please try again later.</p></body></html>"
)

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


def client_credentials_grant(state: SandboxState, tenant_reference: str, request: ClientCredentials) -> IssuedToken:
    """Decide a client-credentials request the way Entra does, in Entra's order:
    tenant, request shape, the app's presence in the tenant, its secret, then the scope."""
    tenant = state.catalogue.find(tenant_reference)
    if tenant is None:
        raise tenant_not_found(tenant_reference)
    if not request.grant_type:
        raise missing_parameter("grant_type")
    if request.grant_type != "client_credentials":
        raise EntraError(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{request.grant_type}'.",
        )
    if not request.client_id:
        raise missing_parameter("client_id")

    expected_id = state.settings.entra_client_id
    known_app = request.client_id.casefold() == expected_id.casefold()
    withdrawn = known_app and state.faults.take(tenant.id, FaultKind.CONSENT_WITHDRAWN) is not None
    if not known_app or not state.is_consented(tenant) or withdrawn:
        # A multi-tenant app without admin consent has no service principal in the client's
        # tenant, so Entra answers as if the app did not exist there.
        raise application_not_found(request.client_id, tenant.display_name)
    if not request.client_secret:
        raise EntraError(
            401,
            "invalid_client",
            7000216,
            "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
        )
    expected_secret = state.settings.entra_client_secret.get_secret_value()
    if not expected_secret or not hmac.compare_digest(request.client_secret.encode(), expected_secret.encode()):
        raise invalid_client_secret(expected_id)

    if not request.scope:
        raise missing_parameter("scope")
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


def openid_configuration(base_url: str, authority: Authority) -> dict[str, Any]:
    """Entra's v2.0 discovery document. Endpoints name a tenant by GUID even when it was
    asked for by domain; ``common`` and ``organizations`` keep their name in the endpoints
    and have the issuer template ``https://{host}/{tenantid}/v2.0``, as Entra's do."""
    root = f"{base_url}/{authority.segment}"
    issuer_tenant = str(authority.directory.id) if authority.directory else "{tenantid}"
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
        # Not in Entra's document (Entra supports both); advertised for generic OIDC clients.
        "code_challenge_methods_supported": ["S256", "plain"],
        "issuer": f"{base_url}/{issuer_tenant}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
        "claims_supported": list(_CLAIMS_SUPPORTED),
        "kerberos_endpoint": f"{root}/kerberos",
        "tenant_region_scope": authority.directory.region if authority.directory else None,
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }


# ---------------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------------


_DNS_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")


def _names_a_tenant(reference: str) -> bool:
    """A GUID (36 characters, hyphens) or a DNS name, as Entra reads a tenant segment."""
    if len(reference) == 36:
        try:
            uuid.UUID(reference)
        except ValueError:
            pass
        else:
            return True
    return bool(_DNS_NAME.match(reference.lower()))


def identity_router(state: SandboxState) -> APIRouter:
    router = APIRouter(tags=["Entra ID"])

    @router.get("/{tenant}/v2.0/.well-known/openid-configuration")
    async def discovery(tenant: str, request: Request) -> JSONResponse:
        try:
            authority = resolve_authority(state, tenant)
        except EntraError:
            if not _names_a_tenant(tenant):
                return error_response(request, tenant_not_a_name(tenant))
            return error_response(request, tenant_not_found(tenant, error="invalid_tenant"))
        found = state.directories.find(tenant)
        outage = state.faults.take(found.id, FaultKind.ENTRA_DISCOVERY_UNAVAILABLE) if found else None
        if outage is not None:
            return JSONResponse(
                {
                    "error": "temporarily_unavailable",
                    "error_description": "AADSTS90033: A transient error has occurred.",
                },
                status_code=503,
                headers={"Retry-After": str(outage.retry_after_seconds)},
            )
        return JSONResponse(openid_configuration(base_url(request), authority))

    @router.get("/{tenant}/discovery/v2.0/keys")
    @router.get("/{tenant}/discovery/keys")
    async def keys(tenant: str, request: Request) -> JSONResponse:
        # One signing key for every tenant, like Entra's shared keys; "common" works too.
        found = state.directories.find(tenant)
        tenant_segment = str(found.id) if found else "{tenantid}"
        issuer = f"{base_url(request)}/{tenant_segment}/v2.0"
        return JSONResponse(state.token_issuer.jwks(issuer))

    @router.post("/{tenant}/oauth2/v2.0/token")
    async def token(tenant: str, request: Request) -> Response:
        found = state.catalogue.find(tenant)
        if found is not None and state.faults.take(found.id, FaultKind.ENTRA_NOT_JSON):
            # What a proxy or an outage page in front of Entra answers: HTML, not JSON.
            return HTMLResponse(ENTRA_OUTAGE_PAGE, headers=NO_CACHE | request_id_headers(request))
        if found is not None and (outage := _token_endpoint_outage(state, found.id)) is not None:
            headers = NO_CACHE | request_id_headers(request) | {"Retry-After": str(outage.retry_after_seconds)}
            document = {
                "error": outage.error,
                "error_description": f"AADSTS{outage.code}: {outage.description}",
                "error_codes": [outage.code],
            }
            return JSONResponse(document, status_code=outage.status, headers=headers)
        body = (await request.body()).decode("utf-8", errors="replace")
        form = dict(parse_qsl(body, keep_blank_values=True))
        credentials = read_token_request(form, request.headers.get("authorization"))
        try:
            if credentials.grant_type in USER_GRANT_TYPES:
                answer = user_token(state, tenant, form, credentials, base_url=base_url(request))
            else:
                answer = _app_token_answer(client_credentials_grant(state, tenant, credentials))
        except EntraError as error:
            log.info(
                "token request refused",
                tenant=tenant,
                client_id=credentials.client_id,
                grant_type=credentials.grant_type,
                aadsts=error.code,
            )
            return error_response(request, error)
        log.info("token issued", tenant=tenant, client_id=credentials.client_id, grant_type=credentials.grant_type)
        return JSONResponse(answer, headers=NO_CACHE | request_id_headers(request))

    return router


def _app_token_answer(issued: IssuedToken) -> dict[str, Any]:
    return {
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "ext_expires_in": issued.expires_in,
        "access_token": issued.access_token,
    }


@dataclass(frozen=True)
class _Outage:
    status: int
    error: str
    code: int
    description: str
    retry_after_seconds: int


def _token_endpoint_outage(state: SandboxState, tenant_id: uuid.UUID) -> _Outage | None:
    """What Entra's token endpoint answers in an incident (503) or when it throttles the
    tenant (429), each with a Retry-After."""
    unavailable = state.faults.take(tenant_id, FaultKind.ENTRA_UNAVAILABLE)
    if unavailable is not None:
        return _Outage(
            503,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
            unavailable.retry_after_seconds,
        )
    throttled = state.faults.take(tenant_id, FaultKind.ENTRA_THROTTLED)
    if throttled is not None:
        return _Outage(
            429,
            "invalid_request",
            90055,
            "TenantThrottlingThreshold - The request has been throttled.",
            throttled.retry_after_seconds,
        )
    return None
