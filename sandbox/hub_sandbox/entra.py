"""What every Entra endpoint of the sandbox shares: the error shape, the AADSTS errors
more than one grant raises, the parts of a token request, and the response headers.

No routes here: :mod:`hub_sandbox.identity` (discovery, keys, token) and
:mod:`hub_sandbox.sign_in_pages` (authorize, logout) use it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from fastapi import Request
from fastapi.responses import JSONResponse

NO_CACHE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}


@dataclass(frozen=True)
class EntraError(Exception):
    """An error answer of Entra's token, discovery or authorize endpoints."""

    status: int
    error: str
    code: int  # the AADSTS number
    description: str  # the text after "AADSTSnnnn: "

    @property
    def message(self) -> str:
        return f"AADSTS{self.code}: {self.description}"

    def body(self, *, base_url: str, correlation_id: str, trace_id: str) -> dict[str, Any]:
        timestamp = entra_timestamp()
        return {
            "error": self.error,
            "error_description": describe(self.message, trace_id=trace_id, correlation_id=correlation_id),
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": self.error_uri(base_url),
        }

    def error_uri(self, base_url: str) -> str:
        return f"{base_url}/error?code={self.code}"


def entra_timestamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def describe(message: str, *, trace_id: str, correlation_id: str) -> str:
    """An ``error_description`` as Entra writes it: the message, then the ids and time."""
    return f"{message}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {entra_timestamp()}"


def tenant_not_found(reference: str, *, error: str = "invalid_request") -> EntraError:
    return EntraError(
        400,
        error,
        90002,
        f"Tenant '{reference}' not found. Check to make sure you have the correct tenant ID"
        " and are signing into the correct cloud. Check with your subscription administrator,"
        " this may happen if there are no active subscriptions for the tenant.",
    )


def tenant_not_a_name(reference: str) -> EntraError:
    """What Entra answers for a tenant that is neither a GUID nor a domain ("a_b", "{…}")."""
    return EntraError(
        400,
        "invalid_tenant",
        900023,
        f"Specified tenant identifier '{reference}' is neither a valid DNS name, nor a valid external domain.",
    )


def missing_parameter(name: str) -> EntraError:
    return EntraError(
        400,
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{name}'.",
    )


def application_not_found(client_id: str, directory: str) -> EntraError:
    return EntraError(
        400,
        "unauthorized_client",
        700016,
        f"Application with identifier '{client_id}' was not found in the"
        f" directory '{directory}'. This can happen if the application has not"
        " been installed by the administrator of the tenant or consented to by any user"
        " in the tenant. You may have sent your authentication request to the wrong"
        " tenant.",
    )


def invalid_client_secret(client_id: str) -> EntraError:
    return EntraError(
        401,
        "invalid_client",
        7000215,
        "Invalid client secret provided. Ensure the secret being sent in the request is"
        " the client secret value, not the client secret ID, for a secret added to app"
        f" '{client_id}'.",
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


# ---------------------------------------------------------------------------------------
# HTTP helpers
# ---------------------------------------------------------------------------------------


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def request_id_headers(request: Request) -> dict[str, str]:
    headers = {"x-ms-request-id": str(uuid.uuid4())}
    client_request_id = request.headers.get("client-request-id")
    if client_request_id:
        headers["client-request-id"] = client_request_id
    return headers


def correlation_id(request: Request) -> str:
    # Entra reports the caller's client-request-id (msal sends one) as the correlation id.
    return request.headers.get("client-request-id") or str(uuid.uuid4())


def error_response(request: Request, error: EntraError) -> JSONResponse:
    headers = NO_CACHE | request_id_headers(request)
    body = error.body(
        base_url=base_url(request),
        correlation_id=correlation_id(request),
        trace_id=headers["x-ms-request-id"],
    )
    return JSONResponse(body, status_code=error.status, headers=headers)
