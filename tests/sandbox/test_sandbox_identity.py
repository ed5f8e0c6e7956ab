"""The Entra stand-in, driven by msal exactly as the fetcher drives Entra."""

from __future__ import annotations

import uuid

import httpx
import jwt
import pytest

from hub_sandbox.server import RunningSandbox
from hub_sandbox.tenants import SAMPLE_TENANT_DOMAIN, TenantCatalogue, tenant_id_for
from tests.sandbox.sandbox_helpers import BC_SCOPE, CLIENT_ID, CLIENT_SECRET, msal_app

SAMPLE_TENANT_ID = tenant_id_for(0)
UNCONSENTED_TENANT_ID = tenant_id_for(2)  # every third generated tenant has no consent


def test_msal_acquires_a_business_central_token(sandbox_server: RunningSandbox, http: httpx.Client) -> None:
    result = msal_app(sandbox_server, str(SAMPLE_TENANT_ID), http).acquire_token_for_client(scopes=[BC_SCOPE])

    assert result["token_type"] == "Bearer"
    assert 3500 <= result["expires_in"] <= 3600
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "https://api.businesscentral.dynamics.com"
    assert claims["tid"] == str(SAMPLE_TENANT_ID)
    assert claims["iss"] == f"https://sts.windows.net/{SAMPLE_TENANT_ID}/"
    assert claims["appid"] == claims["azp"] == CLIENT_ID
    assert claims["roles"] == ["API.ReadWrite.All"]
    assert claims["exp"] - claims["iat"] == 3600


def test_token_verifies_against_the_published_jwks(
    sandbox_server: RunningSandbox, http: httpx.Client, acquire_token: object
) -> None:
    configuration = http.get(f"/{SAMPLE_TENANT_DOMAIN}/v2.0/.well-known/openid-configuration")
    assert configuration.status_code == 200
    document = configuration.json()
    # Asked by domain, answered with the tenant GUID, like Entra.
    assert document["token_endpoint"] == f"{sandbox_server.base_url}/{SAMPLE_TENANT_ID}/oauth2/v2.0/token"
    assert document["issuer"] == f"{sandbox_server.base_url}/{SAMPLE_TENANT_ID}/v2.0"

    token = msal_app(sandbox_server, SAMPLE_TENANT_DOMAIN, http).acquire_token_for_client(scopes=[BC_SCOPE])[
        "access_token"
    ]
    keys = http.get(document["jwks_uri"]).json()["keys"]
    header = jwt.get_unverified_header(token)
    key = next(k for k in keys if k["kid"] == header["kid"])
    public_key = jwt.PyJWK(key).key
    claims = jwt.decode(token, public_key, algorithms=["RS256"], audience="https://api.businesscentral.dynamics.com")
    assert claims["tid"] == str(SAMPLE_TENANT_ID)


def test_wrong_secret_is_invalid_client(sandbox_server: RunningSandbox, http: httpx.Client) -> None:
    result = msal_app(sandbox_server, str(SAMPLE_TENANT_ID), http, secret="not-the-secret").acquire_token_for_client(
        scopes=[BC_SCOPE]
    )

    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")


def test_wrong_secret_answers_401_with_entra_error_shape(http: httpx.Client) -> None:
    response = http.post(
        f"/{SAMPLE_TENANT_ID}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": "wrong",
            "scope": BC_SCOPE,
        },
        headers={"client-request-id": "0d9a7f3e-1111-4222-8333-944455556666"},
    )

    assert response.status_code == 401
    body = response.json()
    assert set(body) >= {
        "error", "error_description", "error_codes", "timestamp", "trace_id", "correlation_id",
    }  # fmt: skip
    assert body["correlation_id"] == "0d9a7f3e-1111-4222-8333-944455556666"
    assert body["trace_id"] in body["error_description"]


def test_unknown_tenant_fails_discovery_and_token(sandbox_server: RunningSandbox, http: httpx.Client) -> None:
    unknown = "nobody-here.onmicrosoft.com"
    # msal discovers the tenant when the app is built, and gives up there.
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        msal_app(sandbox_server, unknown, http)

    response = http.post(
        f"/{unknown}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scope": BC_SCOPE,
        },
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_request"
    assert body["error_codes"] == [90002]
    assert body["error_description"].startswith(f"AADSTS90002: Tenant '{unknown}' not found.")


def test_unconsented_tenant_is_unauthorized_client(
    sandbox_server: RunningSandbox, http: httpx.Client, catalogue: TenantCatalogue
) -> None:
    tenant = catalogue.find(str(UNCONSENTED_TENANT_ID))
    assert tenant is not None
    assert not tenant.consented

    result = msal_app(sandbox_server, str(tenant.id), http).acquire_token_for_client(scopes=[BC_SCOPE])

    assert result["error"] == "unauthorized_client"
    assert result["error_codes"] == [700016]
    assert (
        f"Application with identifier '{CLIENT_ID}' was not found in the directory"
        f" '{tenant.display_name}'" in result["error_description"]
    )


def test_admin_api_grants_and_revokes_consent(sandbox_server: RunningSandbox, http: httpx.Client) -> None:
    tenant = str(UNCONSENTED_TENANT_ID)
    granted = http.put(f"/_sandbox/tenants/{tenant}/consent", json={"consented": True})
    assert granted.status_code == 200
    assert granted.json()["consented"] is True
    try:
        result = msal_app(sandbox_server, tenant, http).acquire_token_for_client(scopes=[BC_SCOPE])
        assert "access_token" in result, result
    finally:
        http.put(f"/_sandbox/tenants/{tenant}/consent", json={"consented": False})

    refused = msal_app(sandbox_server, tenant, http).acquire_token_for_client(scopes=[BC_SCOPE])
    assert refused["error"] == "unauthorized_client"


def test_unknown_client_id_is_not_found_in_directory(sandbox_server: RunningSandbox, http: httpx.Client) -> None:
    stranger = str(uuid.uuid4())
    result = msal_app(sandbox_server, str(SAMPLE_TENANT_ID), http, client_id=stranger).acquire_token_for_client(
        scopes=[BC_SCOPE]
    )
    assert result["error"] == "unauthorized_client"
    assert result["error_codes"] == [700016]


@pytest.mark.parametrize(
    ("scope", "error", "code"),
    [
        ("https://api.businesscentral.dynamics.com/Financials.ReadWrite.All", "invalid_scope", 1002012),
        ("https://graph.microsoft.com/.default", "invalid_resource", 500011),
    ],
)
def test_scopes_other_than_business_central_default_are_refused(
    http: httpx.Client, scope: str, error: str, code: int
) -> None:
    response = http.post(
        f"/{SAMPLE_TENANT_ID}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scope": scope,
        },
    )
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert response.json()["error_codes"] == [code]


def test_unsupported_grant_type(http: httpx.Client) -> None:
    response = http.post(
        f"/{SAMPLE_TENANT_ID}/oauth2/v2.0/token",
        data={"grant_type": "password", "client_id": CLIENT_ID},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"
