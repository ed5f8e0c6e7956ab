"""Accountants sign in with OpenID Connect (authorization code + PKCE) through msal and the
sandbox's Entra; sessions are HTTP-only cookies with CSRF protection; the API also takes
personal API tokens that can be revoked."""

from __future__ import annotations

import re
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from playwright.sync_api import Page, expect

from hub_common.local_nats import free_port
from hub_gateway.accounts.store import KEPT_REVOKED_API_TOKENS, MAX_LIVE_API_TOKENS
from tests.conftest import Sandbox
from tests.e2e.conftest import SECRET_KEY, Hub
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


def _sign_in(hub: Hub, sandbox: Sandbox, email: str) -> tuple[httpx.Client, httpx.Response]:
    """Drive the browser's part: hub → Entra sign-in page → form → callback → hub."""
    browser = httpx.Client(base_url=hub.url, verify=sandbox.tls(), timeout=20)
    return browser, browser.get(_callback(browser, hub, sandbox, email))


def _callback(browser: httpx.Client, hub: Hub, sandbox: Sandbox, email: str) -> str:
    """The hub's callback URL Entra sends the browser back to, not followed yet."""
    to_entra = browser.get("/auth/sign-in?next=/")
    assert to_entra.status_code == 302, to_entra.text
    authorize = to_entra.headers["location"]
    assert authorize.startswith(sandbox.base_url)
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"], "PKCE"
    page = browser.get(authorize)
    assert page.status_code == 200
    form = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page.text))
    form["login"] = email
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert action, page.text[:500]
    back = browser.post(f"{sandbox.base_url}{action.group(1)}", data=form)
    assert back.status_code in (302, 303), back.text[:500]
    callback = back.headers["location"]
    assert callback.startswith(f"{hub.url}/auth/callback")
    return callback


def test_sign_in_with_entra_opens_a_session(hub: Hub, sandbox: Sandbox) -> None:
    browser, landed = _sign_in(hub, sandbox, "erin@woodgrove-accounting.example")
    assert landed.status_code == 303, landed.text[:500]
    cookie = landed.headers["set-cookie"]
    assert "hub_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "samesite=lax" in cookie.lower()
    page = browser.get("/")
    assert page.status_code == 200
    assert "erin@woodgrove-accounting.example" in page.text
    assert browser.get("/api/v1/dashboard").json()["rows"] == []


def test_a_code_sent_into_another_browsers_sign_in_opens_no_session(hub: Hub, sandbox: Sandbox) -> None:
    """Login CSRF by code injection: an attacker signs in, keeps the code Entra gave them and
    sends it, with the state of the victim's own sign-in in progress, to the victim's callback.
    The code was issued for the attacker's PKCE challenge and nonce: a failed sign-in page,
    not a session as the attacker, and not a server error."""
    attacker = httpx.Client(base_url=hub.url, verify=sandbox.tls(), timeout=20)
    attackers_code = parse_qs(urlsplit(_callback(attacker, hub, sandbox, "eve@fabrikam-audit.example")).query)["code"]
    victim = httpx.Client(base_url=hub.url, verify=sandbox.tls(), timeout=20)
    victims_state = parse_qs(urlsplit(_callback(victim, hub, sandbox, "vera@woodgrove-accounting.example")).query)[
        "state"
    ]
    landed = victim.get("/auth/callback", params={"code": attackers_code[0], "state": victims_state[0]})
    assert landed.status_code < 500, landed.text[:500]
    assert "Sign-in failed" in landed.text
    assert "hub_session=" not in landed.headers.get("set-cookie", "")
    assert "eve@fabrikam-audit.example" not in landed.text


def test_a_consumer_mailbox_is_refused_with_a_clear_message(hub: Hub, sandbox: Sandbox) -> None:
    _, landed = _sign_in(hub, sandbox, "someone@hotmail.com")
    assert landed.status_code == 400
    assert "work or school" in landed.text
    assert "hub_session=" not in landed.headers.get("set-cookie", "")


def test_state_changing_requests_need_the_csrf_token(hub: Hub, sandbox: Sandbox) -> None:
    browser, _ = _sign_in(hub, sandbox, "frank@woodgrove-accounting.example")
    body = {"name": "x", "client_url": f"{sandbox.web_client}/cronus-sample.onmicrosoft.com/Production"}
    refused = browser.post("/api/v1/clients", json=body)
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/").text)
    assert csrf
    accepted = browser.post("/api/v1/clients", json=body, headers={"X-CSRF-Token": csrf.group(1)})
    assert accepted.status_code == 202, accepted.text


def test_a_callback_without_its_flow_is_refused(hub: Hub) -> None:
    stray = httpx.get(f"{hub.url}/auth/callback?code=abc&state=def")
    assert stray.status_code == 400
    assert "try again" in stray.text


def test_a_csrf_token_with_non_ascii_characters_is_a_plain_mismatch(hub: Hub, sandbox: Sandbox) -> None:
    browser, _ = _sign_in(hub, sandbox, "hugo@woodgrove-accounting.example")
    in_header = browser.post("/api/v1/tokens", json={"name": "x"}, headers={b"X-CSRF-Token": "é".encode()})
    assert in_header.status_code == 403, in_header.text[:300]
    in_form = browser.post("/sign-out", data={"csrf_token": "é"})
    assert in_form.status_code == 403, in_form.text[:300]
    accepting = browser.post("/invitations/accept", data={"csrf_token": "é", "link": "x" * 20})
    assert accepting.status_code == 403, accepting.text[:300]


def _stray_callback(browser: httpx.Client, path: str) -> httpx.Response:
    """The callback of an older sign-in (or one started in another tab): its state is not
    the pending flow's, which the browser's flow cookie holds."""
    return browser.get(path, params={"code": "an-old-code", "state": "another-flows-state"})


def test_a_sign_in_callback_of_another_flow_asks_to_try_again(hub: Hub) -> None:
    browser = httpx.Client(base_url=hub.url, timeout=20, headers={"Accept-Language": "de"})
    assert browser.get("/auth/sign-in").status_code == 302
    stray = _stray_callback(browser, "/auth/callback")
    assert stray.status_code == 400, stray.text[:300]
    assert "wurde anderswo begonnen; versuchen Sie es erneut" in stray.text


def test_a_client_access_callback_of_another_flow_asks_to_sign_in_again(hub: Hub) -> None:
    browser = httpx.Client(base_url=hub.url, timeout=20, headers={"Accept-Language": "de"})
    assert browser.post("/client-access/sign-in").status_code == 303
    stray = _stray_callback(browser, "/client-access/callback")
    assert stray.status_code == 400, stray.text[:300]
    assert "wurde anderswo begonnen; melden Sie sich erneut an" in stray.text


def test_a_connect_callback_of_another_flow_asks_to_open_the_link_again(hub: Hub, sandbox: Sandbox) -> None:
    api = hub.client("ines@woodgrove-connecting.example")
    card = {"name": "Stray callback", "client_url": f"{sandbox.web_client}/cronus-sample.onmicrosoft.com/Production"}
    client_id = api.post("/api/v1/clients", json=card).json()["client_id"]
    link = eventually(
        lambda: api.post(f"/api/v1/clients/{client_id}/connect-link").json().get("url"), "the client's Connect link"
    )
    browser = httpx.Client(timeout=20, headers={"Accept-Language": "de"})
    assert browser.post(link).status_code == 303
    stray = _stray_callback(browser, f"{hub.url}/connect/callback")
    assert stray.status_code == 400, stray.text[:300]
    assert "wurde anderswo begonnen" in stray.text


# What a page written by someone else could make the hub say, were a callback's description shown.
PHISHING = "Your account is locked. Call +1 555 0100 or sign in again at https://hub-login.example"


def _refused_callback(browser: httpx.Client, path: str) -> httpx.Response:
    """A callback saying Microsoft refused, as anyone can write one and send a person to it."""
    description = f"AADSTS65004: {PHISHING}"
    return browser.get(path, params={"error": "access_denied", "error_description": description})


def test_a_refused_sign_in_shows_entras_code_never_the_callbacks_description(hub: Hub, sandbox: Sandbox) -> None:
    signing_in = httpx.Client(base_url=hub.url, timeout=20)
    assert signing_in.get("/auth/sign-in").status_code == 302
    client_access = httpx.Client(base_url=hub.url, timeout=20)
    assert client_access.post("/client-access/sign-in").status_code == 303
    api = hub.client("jonas@woodgrove-refused.example")
    card = {"name": "Refused callback", "client_url": f"{sandbox.web_client}/cronus-sample.onmicrosoft.com/Production"}
    client_id = api.post("/api/v1/clients", json=card).json()["client_id"]
    link = eventually(
        lambda: api.post(f"/api/v1/clients/{client_id}/connect-link").json().get("url"), "the client's Connect link"
    )
    connecting = httpx.Client(timeout=20)
    assert connecting.post(link).status_code == 303
    pages = [
        _refused_callback(signing_in, "/auth/callback"),
        _refused_callback(client_access, "/client-access/callback"),
        _refused_callback(connecting, f"{hub.url}/connect/callback"),
    ]
    for page in pages:
        assert "Microsoft refused the sign-in (AADSTS65004)" in page.text, page.text[:500]
        assert "locked" not in page.text and "hub-login" not in page.text
    assert "Microsoft sign-in refused" in hub.logs()  # the description is for the log alone
    without_code = signing_in.get("/auth/callback", params={"error": PHISHING, "error_description": PHISHING})
    assert "Microsoft refused the sign-in; try again" in without_code.text
    assert "locked" not in without_code.text


@pytest.fixture(scope="module")
def impatient_gateway(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A replica of the gateway that waits no time for an answer: the registry never answers it."""
    replica, url = hub.start_gateway_replica(
        "gateway-impatient", tmp_path_factory.mktemp("impatient"), {"HUB_COMMAND_TIMEOUT_SECONDS": "0.000001"}
    )
    try:
        yield url
    finally:
        replica.stop()


def test_a_gateway_starts_and_serves_while_entra_does_not_answer(
    hub: Hub, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The dashboard, the API and the live pages of those signed in need no Entra: a replica
    (re)started during an Entra incident serves them, and its sign-in pages say Entra did
    not answer. Before, msal read Entra's metadata at start, and no replica could start."""
    nowhere = f"https://127.0.0.1:{free_port()}"
    replica, url = hub.start_gateway_replica(
        "gateway-no-entra", tmp_path_factory.mktemp("no-entra"), {"HUB_ENTRA_AUTHORITY": nowhere}
    )
    try:
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {hub.token('ines@no-entra.example')}"})
        assert api.get("/api/v1/dashboard").status_code == 200
        for answer in (httpx.get(f"{url}/auth/sign-in"), httpx.post(f"{url}/client-access/sign-in")):
            assert answer.status_code == 503, answer.text[:500]
            assert "Microsoft Entra ID did not answer" in answer.text
    finally:
        replica.stop()
    assert "Traceback" not in replica.log()


def test_behind_https_the_session_cookie_is_the_hosts_own(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Behind HTTPS the hub's cookies carry the __Host- prefix: a browser keeps one only when
    this host set it, Secure, for every path and without a Domain, so a sibling domain's page
    cannot plant a session (login fixation) or a flow cookie. One under the bare name,
    planted domain-wide, is not read."""
    replica, url = hub.start_gateway_replica(
        "gateway-https", tmp_path_factory.mktemp("https"), {"HUB_PUBLIC_URL": "https://hub.example.test"}
    )
    try:
        signed_in = httpx.post(f"{url}/sign-in", data={"email": "hana@host-cookies.example", "next": "/"})
        assert signed_in.status_code == 303, signed_in.text[:300]
        set_cookie = signed_in.headers["set-cookie"]
        assert set_cookie.startswith("__Host-hub_session="), set_cookie
        attributes = {part.strip().split("=")[0].lower() for part in set_cookie.split(";")[1:]}
        assert {"secure", "httponly", "path"} <= attributes and "domain" not in attributes, set_cookie
        assert "Path=/" in set_cookie
        secret = set_cookie.split(";")[0].split("=", 1)[1]

        page = httpx.get(f"{url}/", headers={"Cookie": f"__Host-hub_session={secret}"})
        assert page.status_code == 200 and "hana@host-cookies.example" in page.text
        planted = httpx.get(f"{url}/", headers={"Cookie": f"hub_session={secret}"})
        assert planted.status_code in (302, 303, 307) and "/sign-in" in planted.headers["location"]

        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf
        out = httpx.post(
            f"{url}/sign-out",
            data={"csrf_token": csrf.group(1)},
            headers={"Cookie": f"__Host-hub_session={secret}", "Origin": "https://hub.example.test"},
        )
        assert out.status_code == 303, out.text[:300]
        ended = out.headers["set-cookie"]
        # A browser ignores a __Host- cookie's deletion that is not Secure.
        assert ended.startswith("__Host-hub_session=") and "Secure" in ended and "Max-Age=0" in ended, ended
    finally:
        replica.stop()


def _sealed_cookie(name: str, payload: dict[str, Any]) -> dict[str, str]:
    """The cookie the gateway seals for ``name`` (hub_gateway.web.sealed), made with the test hub's key."""
    claims = {**payload, "purpose": name, "exp": int(time.time()) + 600}
    return {name: jwt.encode(claims, SECRET_KEY, algorithm="HS256")}


def test_pages_that_ask_the_registry_say_so_when_it_does_not_answer(hub: Hub, impatient_gateway: str) -> None:
    choosing = httpx.get(
        f"{impatient_gateway}/sign-in/choose-firm",
        cookies=_sealed_cookie("hub_firm_choice", {"email": "kim@woodgrove-accounting.example", "name": "Kim"}),
    )
    assert choosing.status_code == 400, choosing.text[:300]
    assert "did not answer" in choosing.text
    access = httpx.get(
        f"{impatient_gateway}/client-access",
        cookies=_sealed_cookie("hub_client_access", {"tenant_id": str(uuid.uuid4()), "who": "admin@client.example"}),
    )
    assert access.status_code == 503, access.text[:300]
    assert "did not answer" in access.text
    # An acceptance that got no answer in time may have gone through: the page does not
    # say nothing was changed.
    # (An API token: a dev token asks the registry who it is.)
    token = hub.client("kim@woodgrove-accounting.example").post("/api/v1/tokens", json={"name": "impatient"})
    assert token.status_code == 201, token.text
    accepting = httpx.post(
        f"{impatient_gateway}/invitations/accept",
        data={"link": "a" * 40, "add": "0"},
        headers={"Authorization": f"Bearer {token.json()['token']}"},
    )
    assert accepting.status_code == 503, accepting.text[:300]
    assert "Open the link again in a minute" in accepting.text and "Nothing was changed" not in accepting.text


def test_personal_api_tokens_can_be_created_used_and_revoked(hub: Hub) -> None:
    owner = hub.client("grace@woodgrove-accounting.example")
    created = owner.post("/api/v1/tokens", json={"name": "Power BI export"})
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert token.startswith("hub_pat_")
    assert owner.get("/api/v1/tokens").json()[0]["last_used_at"] is None
    with_token = httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {token}"})
    assert with_token.get("/api/v1/dashboard").status_code == 200
    listed = owner.get("/api/v1/tokens").json()
    assert [t["name"] for t in listed] == ["Power BI export"]
    first_use = datetime.fromisoformat(listed[0]["last_used_at"])
    assert first_use >= datetime.fromisoformat(created.json()["created_at"])
    # Used again within the minute: the recorded use stands (no write per request).
    assert with_token.get("/api/v1/me").status_code == 200
    assert owner.get("/api/v1/tokens").json()[0]["last_used_at"] == listed[0]["last_used_at"]
    assert "token" not in listed[0], "the value is shown once, never listed"
    assert hub.client("mallory@fabrikam-audit.example").delete(f"/api/v1/tokens/{listed[0]['id']}").status_code == 404
    assert owner.delete(f"/api/v1/tokens/{listed[0]['id']}").status_code == 204
    assert with_token.get("/api/v1/dashboard").status_code == 401
    assert owner.post("/api/v1/tokens", json={"name": ""}).status_code == 422


def test_an_accountant_keeps_a_bounded_number_of_api_tokens(hub: Hub) -> None:
    """A script creating tokens in a loop is stopped with a plain reason; revoked tokens stay
    listed up to a bound, the oldest going first."""
    owner = hub.client("heinz@woodgrove-tokens.example")
    created = [owner.post("/api/v1/tokens", json={"name": f"script {n}"}) for n in range(MAX_LIVE_API_TOKENS)]
    assert {answer.status_code for answer in created} == {201}
    refused = owner.post("/api/v1/tokens", json={"name": "one more"})
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        f"You have {MAX_LIVE_API_TOKENS} API tokens that work, the most the hub keeps; revoke one first"
    )
    assert len(owner.get("/api/v1/tokens").json()) == MAX_LIVE_API_TOKENS
    for answer in created:
        assert owner.delete(f"/api/v1/tokens/{answer.json()['id']}").status_code == 204
    newest = owner.post("/api/v1/tokens", json={"name": "after revoking"})
    assert newest.status_code == 201
    assert owner.delete(f"/api/v1/tokens/{newest.json()['id']}").status_code == 204
    listed = owner.get("/api/v1/tokens").json()
    assert len(listed) == KEPT_REVOKED_API_TOKENS
    assert created[0].json()["id"] not in {token["id"] for token in listed}, "the oldest revoked went"
    assert newest.json()["id"] in {token["id"] for token in listed}


def test_sign_in_never_redirects_off_site(hub: Hub, sandbox: Sandbox) -> None:
    browser = httpx.Client(base_url=hub.url, timeout=20)
    page = browser.get("/sign-in?next=//evil.example/steal")
    assert 'value="/"' in page.text


@pytest.mark.parametrize("address", ["@contoso-accounting.example", "nobody@", "x" * 330, "two@@signs.example", " "])
def test_a_bad_address_at_the_dev_sign_in_is_a_clear_400(hub: Hub, address: str) -> None:
    answer = httpx.post(f"{hub.url}/sign-in", data={"email": address, "next": "/"}, follow_redirects=False)
    assert answer.status_code in (400, 422), answer.text[:300]
    assert "hub_session" not in answer.headers.get("set-cookie", "")


def test_pages_run_only_their_own_scripts_and_never_in_another_sites_frame(hub: Hub) -> None:
    page = httpx.get(f"{hub.url}/sign-in")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, policy
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    # The API's own page too: its Swagger UI is served by the hub, not loaded from a CDN.
    docs = httpx.get(f"{hub.url}/docs")
    assert docs.headers["content-security-policy"] == policy
    assert "/static/swagger-ui/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text
    assert httpx.get(f"{hub.url}/redoc").status_code == 404


def test_an_open_live_stream_ends_once_its_token_is_revoked(hub: Hub) -> None:
    owner = hub.client("liv@streaming-accounting.example")
    created = owner.post("/api/v1/tokens", json={"name": "Wallboard"}).json()
    headers = {"Authorization": f"Bearer {created['token']}"}
    with (
        httpx.Client(base_url=hub.url, headers=headers, timeout=httpx.Timeout(10, read=60)) as live,
        live.stream("GET", "/api/v1/live") as stream,
    ):
        lines = stream.iter_lines()
        assert any(line.startswith("event: ready") for line in lines)
        revoked_at = time.monotonic()
        token_id = next(t["id"] for t in owner.get("/api/v1/tokens").json() if t["name"] == "Wallboard")
        assert owner.delete(f"/api/v1/tokens/{token_id}").status_code == 204
        for _ in lines:  # what the stream still sends until it sees the token is gone, then its end
            assert time.monotonic() - revoked_at < 5, "the stream outlived its revoked token"
    # At once, not at the next keep-alive (15 s): the revocation tells the accountant's streams.
    assert time.monotonic() - revoked_at < 5
    assert httpx.get(f"{hub.url}/api/v1/live", headers=headers).status_code == 401


def test_signing_out_ends_the_sessions_live_stream_in_another_tab_at_once(hub: Hub, sandbox: Sandbox) -> None:
    browser, _ = _sign_in(hub, sandbox, "ines@woodgrove-accounting.example")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/").text)
    assert csrf
    other_tab = httpx.Client(base_url=hub.url, cookies=browser.cookies, timeout=httpx.Timeout(10, read=60))
    with other_tab, other_tab.stream("GET", "/api/v1/live") as stream:
        lines = stream.iter_lines()
        assert any(line.startswith("event: ready") for line in lines)
        signed_out_at = time.monotonic()
        assert browser.post("/sign-out", data={"csrf_token": csrf.group(1)}).status_code == 303
        for _ in lines:
            assert time.monotonic() - signed_out_at < 5, "the stream outlived its session"
    assert time.monotonic() - signed_out_at < 5


def test_an_api_call_is_answered_when_the_tokens_last_use_cannot_be_written(hub: Hub) -> None:
    """Another connection holds SQLite's write lock on the gateway's database (as the read
    model's projection does while it writes): the token's use is not recorded, the call is
    answered at once all the same, and the next call after the lock is gone records it."""
    owner = hub.client("henry@woodgrove-audit.example")
    token = owner.post("/api/v1/tokens", json={"name": "nightly export"}).json()["token"]
    with_token = httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    database = hub.gateway_environment["HUB_DATABASE_URL"].removeprefix("sqlite:///")
    holder = sqlite3.connect(database, isolation_level=None, timeout=30)
    try:
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        answered = with_token.get("/api/v1/me")
        waited = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert answered.status_code == 200, answered.text[:300]
    assert waited < 3, f"the call waited {waited:.1f} s for the lock"
    assert owner.get("/api/v1/tokens").json()[0]["last_used_at"] is None
    assert with_token.get("/api/v1/me").status_code == 200
    assert owner.get("/api/v1/tokens").json()[0]["last_used_at"] is not None


def test_an_api_token_may_work_for_a_number_of_days_only(hub: Hub) -> None:
    owner = hub.client("ines@woodgrove-expiry.example")
    for bad in (0, 367, "soon", 1.5):
        assert owner.post("/api/v1/tokens", json={"name": "x", "expires_in_days": bad}).status_code == 422, bad
    misspelt = owner.post("/api/v1/tokens", json={"name": "x", "expires_in_day": 30})
    assert misspelt.status_code == 422, "a misspelt lifetime must not make a token that never expires"
    created = owner.post("/api/v1/tokens", json={"name": "Quarter close", "expires_in_days": 30}).json()
    expires_at = datetime.fromisoformat(created["expires_at"])
    assert abs(expires_at - datetime.fromisoformat(created["created_at"]) - timedelta(days=30)) < timedelta(seconds=1)
    with_token = httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {created['token']}"}, timeout=20)
    assert with_token.get("/api/v1/me").status_code == 200
    # Thirty days later (its expiry moved to the past in the gateway's database).
    database = hub.gateway_environment["HUB_DATABASE_URL"].removeprefix("sqlite:///")
    with closing(sqlite3.connect(database, timeout=30)) as connection, connection:
        # As SQLAlchemy writes SQLite's timestamps (UTC, no zone).
        past = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
        changed = connection.execute(
            "UPDATE gateway_api_tokens SET expires_at = ? WHERE id = ?", (past, uuid.UUID(created["id"]).hex)
        )
        assert changed.rowcount == 1
    assert with_token.get("/api/v1/me").status_code == 401
    [listed] = [t for t in owner.get("/api/v1/tokens").json() if t["id"] == created["id"]]
    assert listed["revoked_at"] is None and listed["expires_at"] is not None
    never = owner.post("/api/v1/tokens", json={"name": "Until revoked"}).json()
    assert never["expires_at"] is None


def test_the_api_page_shows_the_api_under_the_hubs_own_policy(hub: Hub, page: Page) -> None:
    """Swagger UI from the hub itself: it renders the hub's OpenAPI document with nothing
    the page's Content-Security-Policy refuses (the page fixture fails on any refusal)."""
    page.goto(f"{hub.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Accountant Hub")
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/dashboard").first).to_be_visible()
