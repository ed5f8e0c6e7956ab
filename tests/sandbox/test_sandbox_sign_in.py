"""Accountant sign-in through the sandbox's Entra: authorization code + PKCE, driven by msal
exactly as the hub's gateway drives Entra (a browser played by httpx in between)."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest

from hub_sandbox import sign_in
from hub_sandbox.accounts import directory_id_for
from hub_sandbox.server import RunningSandbox
from hub_sandbox.sign_in import SESSION_COOKIE
from hub_sandbox.tenants import SAMPLE_TENANT_DOMAIN, tenant_id_for
from tests.sandbox.sandbox_helpers import CLIENT_ID, msal_app

# Loopback redirect URIs match on any port (as in Entra); nothing needs to listen there,
# because the browser below stops at the redirect.
REDIRECT_URI = "http://127.0.0.1:53682/auth/callback"
BC_USER_SCOPE = "https://api.businesscentral.dynamics.com/Financials.ReadWrite.All"
SAMPLE_TENANT_ID = tenant_id_for(0)
_FLOW_TOKEN = re.compile(r'name="flowToken" value="([^"]+)"')
_HIDDEN_INPUT = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')

# msal warns whenever response_mode is not form_post; most tests use its default (query).
pytestmark = pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended:UserWarning")
_FORM_ACTION = re.compile(r'<form method="post" action="([^"]+)"')


@pytest.fixture
def browser(sandbox_server: RunningSandbox) -> Iterator[httpx.Client]:
    """A browser of its own per test (its cookies are the sign-in session)."""
    with httpx.Client(
        base_url=sandbox_server.base_url, verify=sandbox_server.ssl_context(), timeout=10, follow_redirects=False
    ) as client:
        yield client


def submit_email(browser: httpx.Client, page: httpx.Response, email: str) -> httpx.Response:
    """Fill in the sign-in page's form and post it, as a person would."""
    assert page.status_code == 200, page.text
    flow_token = _FLOW_TOKEN.search(page.text)
    action = _FORM_ACTION.search(page.text)
    assert flow_token and action, page.text
    return browser.post(action.group(1), data={"flowToken": flow_token.group(1), "login": email})


def redirected_to(response: httpx.Response, redirect_uri: str = REDIRECT_URI) -> dict[str, str]:
    """The query the app's redirect URI receives (the browser does not follow it)."""
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(redirect_uri + "?"), location
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def sign_in_with(browser: httpx.Client, auth_uri: str, email: str) -> dict[str, str]:
    page = browser.get(auth_uri)
    return redirected_to(submit_email(browser, page, email))


def verified_claims(http: httpx.Client, authority: str, token: str, audience: str) -> dict[str, Any]:
    """Check a token's signature against the JWKS the authority's discovery names."""
    document = http.get(f"{authority}/v2.0/.well-known/openid-configuration").json()
    keys = http.get(document["jwks_uri"]).json()["keys"]
    header = jwt.get_unverified_header(token)
    key = jwt.PyJWK(next(k for k in keys if k["kid"] == header["kid"])).key
    claims: dict[str, Any] = jwt.decode(token, key, algorithms=["RS256"], audience=audience)
    return claims


def decode_client_info(value: str) -> dict[str, str]:
    info: dict[str, str] = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    return info


# ---------------------------------------------------------------------------------------
# The whole flow, with msal
# ---------------------------------------------------------------------------------------


def test_msal_signs_an_accountant_in_at_organizations(
    sandbox_server: RunningSandbox, http: httpx.Client, browser: httpx.Client
) -> None:
    authority = sandbox_server.authority("organizations")
    app = msal_app(sandbox_server, "organizations", http)
    flow = app.initiate_auth_code_flow(scopes=["email"], redirect_uri=REDIRECT_URI)

    response = sign_in_with(browser, flow["auth_uri"], "Anna.Berg@firm.example")

    assert response["state"] == flow["state"]
    assert response["code"].startswith("1.A")
    uuid.UUID(response["session_state"])
    result = app.acquire_token_by_auth_code_flow(flow, response)
    assert "error" not in result, result

    firm = directory_id_for("firm.example")
    claims = result["id_token_claims"]
    assert claims["email"] == claims["preferred_username"] == "Anna.Berg@firm.example"
    assert claims["name"] == "Anna Berg"
    assert claims["tid"] == str(firm)
    assert claims["iss"] == f"{sandbox_server.base_url}/{firm}/v2.0"
    assert claims["aud"] == CLIENT_ID
    assert claims["ver"] == "2.0"
    # msal sends sha256(nonce) and checks it came back; the sandbox echoes what was sent.
    assert claims["nonce"] == hashlib.sha256(flow["nonce"].encode()).hexdigest()
    assert verified_claims(http, authority, result["id_token"], CLIENT_ID)["oid"] == claims["oid"]
    assert result["token_type"] == "Bearer"
    assert result["refresh_token"]
    assert decode_client_info(result["client_info"]) == {"uid": claims["oid"], "utid": str(firm)}
    # With nothing but OpenID Connect scopes, Entra hands out a Microsoft Graph token.
    assert "https://graph.microsoft.com/User.Read" in result["scope"].split()
    access = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert access["aud"] == "00000003-0000-0000-c000-000000000000"
    assert access["iss"] == f"https://sts.windows.net/{firm}/"

    # msal made an account of it and can refresh silently with the refresh token.
    [account] = app.get_accounts()
    assert account["username"] == "Anna.Berg@firm.example"
    assert account["home_account_id"] == f"{claims['oid']}.{firm}"
    refreshed = app.acquire_token_silent(["email"], account=account, force_refresh=True)
    assert refreshed is not None and "access_token" in refreshed, refreshed
    assert refreshed["access_token"] != result["access_token"]


def test_members_of_a_demo_tenant_sign_in_at_common_for_business_central(
    sandbox_server: RunningSandbox, http: httpx.Client, browser: httpx.Client
) -> None:
    app = msal_app(sandbox_server, "common", http)
    flow = app.initiate_auth_code_flow(
        scopes=[BC_USER_SCOPE], redirect_uri="http://localhost:8000/auth/callback", response_mode="query"
    )
    page = browser.get(flow["auth_uri"])
    response = redirected_to(
        submit_email(browser, page, f"admin@{SAMPLE_TENANT_DOMAIN}"), "http://localhost:8000/auth/callback"
    )

    result = app.acquire_token_by_auth_code_flow(flow, response)

    assert result["id_token_claims"]["tid"] == str(SAMPLE_TENANT_ID)
    assert "email" not in result["id_token_claims"]  # only with the email scope, as in Entra
    assert result["scope"] == BC_USER_SCOPE
    access = verified_claims(
        http, sandbox_server.authority("common"), result["access_token"], "https://api.businesscentral.dynamics.com"
    )
    assert access["scp"] == "Financials.ReadWrite.All"
    assert access["tid"] == str(SAMPLE_TENANT_ID)
    assert access["upn"] == f"admin@{SAMPLE_TENANT_DOMAIN}"
    assert access["idtyp"] == "user"


def test_signing_into_another_organisation_makes_a_guest(
    sandbox_server: RunningSandbox, http: httpx.Client, browser: httpx.Client
) -> None:
    app = msal_app(sandbox_server, str(SAMPLE_TENANT_ID), http)
    flow = app.initiate_auth_code_flow(scopes=["email"], redirect_uri=REDIRECT_URI)

    result = app.acquire_token_by_auth_code_flow(flow, sign_in_with(browser, flow["auth_uri"], "bo@firm.example"))

    claims = result["id_token_claims"]
    firm = directory_id_for("firm.example")
    assert claims["tid"] == str(SAMPLE_TENANT_ID)
    assert claims["idp"] == f"https://sts.windows.net/{firm}/"
    home = decode_client_info(result["client_info"])
    assert home["utid"] == str(firm)  # msal's account stays the user's home account
    assert home["uid"] != claims["oid"]


def test_discovery_of_multi_tenant_authorities_and_user_directories(
    sandbox_server: RunningSandbox, http: httpx.Client, browser: httpx.Client
) -> None:
    base = sandbox_server.base_url
    for segment in ("organizations", "common"):
        document = http.get(f"/{segment}/v2.0/.well-known/openid-configuration").json()
        assert document["issuer"] == f"{base}/{{tenantid}}/v2.0"
        assert document["authorization_endpoint"] == f"{base}/{segment}/oauth2/v2.0/authorize"
        assert document["token_endpoint"] == f"{base}/{segment}/oauth2/v2.0/token"
        assert document["end_session_endpoint"] == f"{base}/{segment}/oauth2/v2.0/logout"
        assert document["jwks_uri"] == f"{base}/{segment}/discovery/v2.0/keys"
        assert "code" in document["response_types_supported"]
        assert document["code_challenge_methods_supported"] == ["S256", "plain"]

    # A user's own directory exists once someone from it signed in.
    directory = directory_id_for("new-firm.example")
    assert http.get(f"/{directory}/v2.0/.well-known/openid-configuration").status_code == 400
    app = msal_app(sandbox_server, "organizations", http)
    flow = app.initiate_auth_code_flow(scopes=[], redirect_uri=REDIRECT_URI)
    sign_in_with(browser, flow["auth_uri"], "cy@new-firm.example")
    document = http.get(f"/{directory}/v2.0/.well-known/openid-configuration").json()
    assert document["issuer"] == f"{base}/{directory}/v2.0"


# ---------------------------------------------------------------------------------------
# The authorize endpoint
# ---------------------------------------------------------------------------------------


def authorize_url(tenant: str = "organizations", **overrides: str) -> str:
    params = {
        "client_id": CLIENT_ID,
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile offline_access email",
        "state": "the-state",
        "nonce": "the-nonce",
        "code_challenge": base64.urlsafe_b64encode(hashlib.sha256(b"v" * 43).digest()).rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return f"/{tenant}/oauth2/v2.0/authorize?{urlencode({k: v for k, v in params.items() if v})}"


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/auth/callback",
        "http://127.0.0.1:8000/other/callback",
        "http://127.0.0.1:8000/auth/callback/",
        "https://127.0.0.1:8000/auth/callback",
    ],
)
def test_unregistered_redirect_uri_is_an_error_page(browser: httpx.Client, redirect_uri: str) -> None:
    response = browser.get(authorize_url(redirect_uri=redirect_uri))

    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert f"AADSTS50011: The redirect URI &#x27;{redirect_uri}&#x27; specified in the request" in response.text
    assert f"configured for the application &#x27;{CLIENT_ID}&#x27;" in response.text


@pytest.mark.parametrize(
    "redirect_uri",
    ["http://127.0.0.1:8000/auth/callback", "http://127.0.0.1:1234/auth/callback", "http://localhost/auth/callback"],
)
def test_registered_and_loopback_redirect_uris_are_accepted(browser: httpx.Client, redirect_uri: str) -> None:
    page = browser.get(authorize_url(redirect_uri=redirect_uri))

    assert page.status_code == 200
    assert redirected_to(submit_email(browser, page, "dee@firm.example"), redirect_uri)["state"] == "the-state"


def test_unknown_app_and_tenant_are_error_pages(browser: httpx.Client) -> None:
    stranger = str(uuid.uuid4())
    unknown_app = browser.get(authorize_url(client_id=stranger))
    assert unknown_app.status_code == 400
    assert f"AADSTS700016: Application with identifier &#x27;{stranger}&#x27;" in unknown_app.text

    unknown_tenant = browser.get(authorize_url(tenant="nobody-here.onmicrosoft.com"))
    assert unknown_tenant.status_code == 400
    assert "AADSTS90002" in unknown_tenant.text


@pytest.mark.parametrize(
    ("overrides", "error", "code"),
    [
        ({"code_challenge_method": "S512"}, "invalid_request", 90023),
        ({"code_challenge": "short"}, "invalid_request", 501491),
        ({"response_type": "token"}, "unsupported_response_type", 700051),
        ({"scope": ""}, "invalid_request", 900144),
        ({"scope": "openid https://api.businesscentral.dynamics.com/Nope.All"}, "invalid_client", 650053),
        ({"scope": "openid https://unknown.example/read"}, "invalid_resource", 500011),
    ],
)
def test_later_errors_go_back_to_the_app_with_the_state(
    browser: httpx.Client, overrides: dict[str, str], error: str, code: int
) -> None:
    response = redirected_to(browser.get(authorize_url(**overrides)))

    assert response["error"] == error
    assert response["error_description"].startswith(f"AADSTS{code}: ")
    assert "Trace ID: " in response["error_description"]
    assert response["state"] == "the-state"


def test_plain_pkce_and_no_pkce_are_accepted(
    sandbox_server: RunningSandbox, http: httpx.Client, browser: httpx.Client
) -> None:
    token_url = f"{sandbox_server.base_url}/organizations/oauth2/v2.0/token"
    verifier = "p" * 50
    for overrides, sent_verifier in (({"code_challenge": verifier, "code_challenge_method": "plain"}, verifier),
                                     ({"code_challenge": "", "code_challenge_method": ""}, None)):  # fmt: skip
        code = sign_in_with(browser, authorize_url(prompt="login", **overrides), "eve@firm.example")["code"]
        data = {
            "grant_type": "authorization_code",
            "client_id": CLIENT_ID,
            "client_secret": sandbox_server.settings.entra_client_secret.get_secret_value(),
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid email",
        }
        if sent_verifier:
            data["code_verifier"] = sent_verifier
        answer = http.post(token_url, data=data)
        assert answer.status_code == 200, answer.text
        assert jwt.decode(answer.json()["id_token"], options={"verify_signature": False})["nonce"] == "the-nonce"


def test_invalid_email_shows_the_form_again_accessibly(browser: httpx.Client) -> None:
    page = browser.get(authorize_url(login_hint="fay@firm.example"))
    assert 'value="fay@firm.example"' in page.text
    assert '<label for="login">Email address</label>' in page.text
    assert 'lang="en"' in page.text
    assert "Accountant Hub" in page.text
    assert "stand-in for Microsoft sign-in" in page.text

    again = submit_email(browser, page, "not an email")

    assert again.status_code == 200
    assert 'role="alert"' in again.text
    assert 'aria-invalid="true"' in again.text
    assert 'aria-describedby="login-note login-error"' in again.text
    assert redirected_to(submit_email(browser, again, "fay@firm.example"))["code"]


def test_tampered_flow_token_is_refused(browser: httpx.Client) -> None:
    page = browser.get(authorize_url())
    flow_token = _FLOW_TOKEN.search(page.text)
    assert flow_token
    body, _, mac = flow_token.group(1).partition(".")
    forged = base64.urlsafe_b64encode(
        base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).replace(REDIRECT_URI.encode(), b"http://127.0.0.1:9/x")
    )
    response = browser.post(
        "/organizations/oauth2/v2.0/authorize",
        data={"flowToken": f"{forged.decode().rstrip('=')}.{mac}", "login": "gus@firm.example"},
    )

    assert response.status_code == 400
    assert "AADSTS90100" in response.text


def test_session_signs_in_silently_unless_prompt_login(browser: httpx.Client) -> None:
    silent_without_session = redirected_to(browser.get(authorize_url(prompt="none")))
    assert silent_without_session["error"] == "login_required"
    assert silent_without_session["error_description"].startswith("AADSTS50058: ")

    sign_in_with(browser, authorize_url(), "hal@firm.example")
    assert browser.cookies.get(SESSION_COOKIE)

    assert redirected_to(browser.get(authorize_url(prompt="none")))["code"]
    assert redirected_to(browser.get(authorize_url()))["code"]  # single sign-on
    forced = browser.get(authorize_url(prompt="login"))
    assert forced.status_code == 200 and "flowToken" in forced.text
    other_user = browser.get(authorize_url(login_hint="ida@firm.example"))
    assert other_user.status_code == 200 and 'value="ida@firm.example"' in other_user.text


def test_msal_with_form_post_response_mode(
    sandbox_server: RunningSandbox, http: httpx.Client, browser: httpx.Client
) -> None:
    """msal's recommended mode: the browser posts the code to the hub's callback."""
    app = msal_app(sandbox_server, "organizations", http)
    flow = app.initiate_auth_code_flow(scopes=["email"], redirect_uri=REDIRECT_URI, response_mode="form_post")
    posted = submit_email(browser, browser.get(flow["auth_uri"]), "una@firm.example")
    assert posted.status_code == 200
    auth_response = {html.unescape(k): html.unescape(v) for k, v in _HIDDEN_INPUT.findall(posted.text)}

    result = app.acquire_token_by_auth_code_flow(flow, auth_response)

    assert result["id_token_claims"]["email"] == "una@firm.example"


def test_form_post_response_mode(browser: httpx.Client) -> None:
    page = browser.get(authorize_url(response_mode="form_post"))
    response = submit_email(browser, page, "jo@firm.example")

    assert response.status_code == 200
    assert f'<form method="post" action="{REDIRECT_URI}">' in response.text
    assert 'name="code" value="1.A' in response.text
    assert '<input type="hidden" name="state" value="the-state">' in response.text
    assert "form-action 'self' http://127.0.0.1:53682" in response.headers["content-security-policy"]


# ---------------------------------------------------------------------------------------
# Redeeming the code
# ---------------------------------------------------------------------------------------


def test_pkce_verifier_mismatch_is_refused(
    sandbox_server: RunningSandbox, http: httpx.Client, browser: httpx.Client
) -> None:
    app = msal_app(sandbox_server, "organizations", http)
    flow = app.initiate_auth_code_flow(scopes=["email"], redirect_uri=REDIRECT_URI)
    response = sign_in_with(browser, flow["auth_uri"], "kim@firm.example")
    genuine = flow["code_verifier"]

    result = app.acquire_token_by_auth_code_flow(dict(flow, code_verifier="x" * 43), response)

    assert result["error"] == "invalid_grant"
    assert result["error_codes"] == [501481]
    assert result["error_description"].startswith(
        "AADSTS501481: The Code_Verifier does not match the code_challenge supplied in the authorization request."
    )
    # A failed attempt does not use the code up.
    assert "access_token" in app.acquire_token_by_auth_code_flow(dict(flow, code_verifier=genuine), response)


def test_verifier_without_a_challenge_is_refused(
    sandbox_server: RunningSandbox, http: httpx.Client, browser: httpx.Client
) -> None:
    code = sign_in_with(browser, authorize_url(code_challenge="", code_challenge_method=""), "lu@firm.example")["code"]
    answer = http.post(
        "/organizations/oauth2/v2.0/token",
        data={
            "grant_type": "authorization_code",
            "client_id": CLIENT_ID,
            "client_secret": sandbox_server.settings.entra_client_secret.get_secret_value(),
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": "v" * 43,
        },
    )
    assert answer.status_code == 400
    assert answer.json()["error_codes"] == [50148]


def test_code_is_single_use(sandbox_server: RunningSandbox, http: httpx.Client, browser: httpx.Client) -> None:
    app = msal_app(sandbox_server, "organizations", http)
    flow = app.initiate_auth_code_flow(scopes=["email"], redirect_uri=REDIRECT_URI)
    response = sign_in_with(browser, flow["auth_uri"], "max@firm.example")
    assert "access_token" in app.acquire_token_by_auth_code_flow(dict(flow), response)

    again = app.acquire_token_by_auth_code_flow(dict(flow), response)

    assert again["error"] == "invalid_grant"
    assert again["error_codes"] == [54005]
    assert again["error_description"].startswith("AADSTS54005: OAuth2 Authorization code was already redeemed")


def test_code_expires_after_ten_minutes(
    sandbox_server: RunningSandbox, http: httpx.Client, browser: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = msal_app(sandbox_server, "organizations", http)
    flow = app.initiate_auth_code_flow(scopes=["email"], redirect_uri=REDIRECT_URI)
    response = sign_in_with(browser, flow["auth_uri"], "ned@firm.example")
    signed_in_at = sign_in.clock()
    monkeypatch.setattr(sign_in, "clock", lambda: signed_in_at + 601)

    result = app.acquire_token_by_auth_code_flow(flow, response)

    assert result["error"] == "invalid_grant"
    assert result["error_codes"] == [70008]


def test_wrong_client_secret_is_invalid_client(
    sandbox_server: RunningSandbox, http: httpx.Client, browser: httpx.Client
) -> None:
    app = msal_app(sandbox_server, "organizations", http, secret="not-the-secret")
    flow = app.initiate_auth_code_flow(scopes=["email"], redirect_uri=REDIRECT_URI)

    result = app.acquire_token_by_auth_code_flow(flow, sign_in_with(browser, flow["auth_uri"], "oz@firm.example"))

    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]


def test_redirect_uri_and_tenant_must_match_the_code(
    sandbox_server: RunningSandbox, http: httpx.Client, browser: httpx.Client
) -> None:
    code = sign_in_with(browser, authorize_url(code_challenge="", code_challenge_method=""), "pia@firm.example")["code"]
    base = {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "client_secret": sandbox_server.settings.entra_client_secret.get_secret_value(),
        "code": code,
    }
    other_uri = http.post(
        "/organizations/oauth2/v2.0/token", data=base | {"redirect_uri": "http://127.0.0.1:1/auth/callback"}
    )
    assert other_uri.json()["error_codes"] == [500112]
    other_tenant = http.post(f"/{SAMPLE_TENANT_ID}/oauth2/v2.0/token", data=base | {"redirect_uri": REDIRECT_URI})
    assert other_tenant.json()["error_codes"] == [700005]


def test_refresh_token_reaches_business_central_and_one_resource_per_request(
    sandbox_server: RunningSandbox, http: httpx.Client, browser: httpx.Client
) -> None:
    app = msal_app(sandbox_server, "organizations", http)
    flow = app.initiate_auth_code_flow(scopes=["User.Read", BC_USER_SCOPE], redirect_uri=REDIRECT_URI)
    response = sign_in_with(browser, flow["auth_uri"], "quinn@firm.example")

    both = app.acquire_token_by_auth_code_flow(dict(flow), response)
    assert both["error_codes"] == [28000]  # msal must redeem for one resource at a time

    result = app.acquire_token_by_auth_code_flow(flow, response, scopes=["User.Read"])
    assert "access_token" in result, result
    [account] = app.get_accounts()
    business_central = app.acquire_token_silent([BC_USER_SCOPE], account=account)
    assert business_central is not None and "access_token" in business_central, business_central
    claims = jwt.decode(business_central["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "https://api.businesscentral.dynamics.com"
    assert claims["scp"] == "Financials.ReadWrite.All"


# ---------------------------------------------------------------------------------------
# Signing out
# ---------------------------------------------------------------------------------------


def test_logout_returns_to_a_registered_origin_and_ends_the_session(browser: httpx.Client) -> None:
    sign_in_with(browser, authorize_url(), "ray@firm.example")
    assert browser.cookies.get(SESSION_COOKIE)

    back = browser.get(
        "/organizations/oauth2/v2.0/logout",
        params={"post_logout_redirect_uri": "http://127.0.0.1:53682/", "state": "bye"},
    )

    assert back.status_code == 302
    assert back.headers["location"] == "http://127.0.0.1:53682/?state=bye"
    assert not browser.cookies.get(SESSION_COOKIE)
    assert browser.get(authorize_url()).status_code == 200  # the form again, no silent sign-in

    elsewhere = browser.get("/common/oauth2/v2.0/logout", params={"post_logout_redirect_uri": "https://evil.example/"})
    assert elsewhere.status_code == 200
    assert "You signed out of your account" in elsewhere.text
