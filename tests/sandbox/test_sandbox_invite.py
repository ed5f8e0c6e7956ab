"""The client admin's "Invite External Accountant" page of the sandbox.

A tiny HTTP server stands in for the hub: it records what the page sends and answers as
told. The JWT the page sends is verified with the sandbox's own JWKS, as the gateway does.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import jwt
import pytest

from hub_common.local_nats import free_port
from hub_sandbox.client_admin import GLOBAL_ADMINISTRATOR
from hub_sandbox.server import RunningSandbox, serve_in_background
from hub_sandbox.tenants import SAMPLE_TENANT_DOMAIN, tenant_id_for
from tests.sandbox.sandbox_helpers import CLIENT_ID, sandbox_settings

# Tenant 2 starts without the hub app's consent, so the page's grant is visible.
UNCONSENTED = 2


@dataclass
class HubStub:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    answer_status: int = 202
    answer_body: dict[str, Any] = field(
        default_factory=lambda: {"invitation_id": "7d3c0e5e-1111-4a4a-8b8b-000000000001"}
    )


@pytest.fixture(scope="module")
def hub() -> Iterator[HubStub]:
    stub = HubStub(url="")

    class Handler(BaseHTTPRequestHandler):
        recorded: ClassVar[HubStub] = stub

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            self.recorded.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
            payload = json.dumps(self.recorded.answer_body).encode()
            self.send_response(self.recorded.answer_status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def sandbox_with_hub(hub: HubStub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    settings = sandbox_settings(tmp_path_factory.mktemp("invite-sandbox"), sandbox_hub_url=hub.url)
    with serve_in_background(settings) as running:
        yield running


@pytest.fixture(scope="module")
def sandbox_without_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    nobody = f"http://127.0.0.1:{free_port()}"
    settings = sandbox_settings(
        tmp_path_factory.mktemp("invite-sandbox-alone"), sandbox_hub_url=nobody, sandbox_hub_timeout_seconds=3
    )
    with serve_in_background(settings) as running:
        yield running


def _client(sandbox: RunningSandbox) -> httpx.Client:
    return httpx.Client(base_url=sandbox.base_url, verify=sandbox.ssl_context(), timeout=20)


def _tenant(client: httpx.Client, index: int) -> dict[str, Any]:
    tenants: list[dict[str, Any]] = client.get("/_sandbox/tenants").json()["tenants"]
    return tenants[index]


def _form(tenant: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    production = tenant["environments"][0]
    values: dict[str, Any] = {
        "consent": "accept",
        "email": "Anna.Berg@Contoso-Accounting.example",
        "first_name": "Anna",
        "last_name": "Berg",
        "environment": production["name"],
        "company": [f"Production/{company['name']}" for company in production["companies"]],
        "welcome_text": "Hello Anna,\r\n\r\nPlease keep an eye on our books.",
    }
    values.update(overrides)
    return {key: value for key, value in values.items() if value is not None}


def test_the_form_is_listed_and_renders_accessibly(sandbox_with_hub: RunningSandbox) -> None:
    with _client(sandbox_with_hub) as client:
        sample = _tenant(client, 0)
        assert sample["invite_url"] == (
            f"{sandbox_with_hub.base_url}/admin/{SAMPLE_TENANT_DOMAIN}/invite-external-accountant"
        )
        assert "Invite external accountant" in client.get("/").text
        company_page = client.get(f"/bc/{SAMPLE_TENANT_DOMAIN}/Production").text
        assert f"/admin/{SAMPLE_TENANT_DOMAIN}/invite-external-accountant" in company_page

        page = client.get(f"/admin/{SAMPLE_TENANT_DOMAIN}/invite-external-accountant")
        assert page.status_code == 200
        html = page.text
        assert '<html lang="en">' in html
        assert "<h1>Invite External Accountant</h1>" in html
        for field_id, label in [
            ("consent", "I Accept"),
            ("email", "Email Address"),
            ("first_name", "First Name"),
            ("last_name", "Last Name"),
            ("environment", "Environment"),
            ("welcome_text", "Welcome email"),
        ]:
            assert f'<label for="{field_id}">{label}</label>' in html, field_id
            assert f'id="{field_id}"' in html
        assert '<option value="Production" selected>' in html
        assert 'name="company" value="Production/CRONUS UK Ltd." checked' in html
        assert 'name="company" value="Sandbox/CRONUS UK Ltd.">' in html, "only the chosen environment is checked"
        assert "<legend>Companies in Production</legend>" in html
        assert "admin@cronus-sample.onmicrosoft.com" in html

        assert client.get("/admin/nobody.onmicrosoft.com/invite-external-accountant").status_code == 404


def test_an_incomplete_form_is_shown_again_and_nothing_is_sent(sandbox_with_hub: RunningSandbox, hub: HubStub) -> None:
    with _client(sandbox_with_hub) as client:
        tenant = _tenant(client, UNCONSENTED)
        assert tenant["consented"] is False
        sent_before = len(hub.requests)
        answer = client.post(
            tenant["invite_url"],
            data=_form(
                tenant,
                consent=None,
                email="not-an-address",
                company=["Production/No Such Company", f"Sandbox/{tenant['environments'][0]['companies'][0]['name']}"],
            ),
        )
        assert answer.status_code == 422
        html = answer.text
        assert 'role="alert"' in html and "There is a problem" in html
        assert "Select I Accept" in html
        assert 'id="email-error"' in html and 'aria-invalid="true"' in html
        assert "No Such Company, " in html and ": not a company of Production." in html
        assert 'value="not-an-address"' in html, "what was typed is kept"
        assert len(hub.requests) == sent_before
        assert _tenant(client, UNCONSENTED)["consented"] is False


def test_an_invitation_reaches_the_hub_with_the_admins_entra_token(
    sandbox_with_hub: RunningSandbox, hub: HubStub
) -> None:
    hub.answer_status, hub.answer_body = 202, {"invitation_id": "7d3c0e5e-1111-4a4a-8b8b-000000000001"}
    with _client(sandbox_with_hub) as client:
        tenant = _tenant(client, UNCONSENTED)
        production = tenant["environments"][0]
        sent_before = len(hub.requests)
        before = int(time.time())
        answer = client.post(tenant["invite_url"], data=_form(tenant))

        assert answer.status_code == 200, answer.text
        assert "Invitation sent to <strong>Anna.Berg@Contoso-Accounting.example</strong>" in answer.text
        assert "7d3c0e5e-1111-4a4a-8b8b-000000000001" in answer.text
        assert _tenant(client, UNCONSENTED)["consented"] is True, "the admin granted the hub app consent"

        assert len(hub.requests) == sent_before + 1
        request = hub.requests[-1]
        assert request["path"] == "/api/v1/client-invitations"
        assert json.loads(request["body"]) == {
            "accountant_email": "Anna.Berg@Contoso-Accounting.example",
            "accountant_name": "Anna Berg",
            "environment": "Production",
            "companies": [company["name"] for company in production["companies"]],
            "client_name": tenant["display_name"],
            "welcome_text": "Hello Anna,\n\nPlease keep an eye on our books.",
        }
        headers = {key.lower(): value for key, value in request["headers"].items()}
        assert headers["content-type"] == "application/json"
        scheme, token = headers["authorization"].split(" ", 1)
        assert scheme == "Bearer"

        # Verify as the gateway would: the tenant's discovery document names the JWKS.
        tenant_id = str(tenant_id_for(UNCONSENTED))
        discovery = client.get(f"/{tenant_id}/v2.0/.well-known/openid-configuration").json()
        jwks = client.get(discovery["jwks_uri"]).json()
        header = jwt.get_unverified_header(token)
        assert header["alg"] == "RS256"
        assert header["kid"] in {key["kid"] for key in jwks["keys"]}
        key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["RS256"],
            audience=CLIENT_ID,
            issuer=discovery["issuer"],
            options={"require": ["exp", "iat", "nbf", "iss", "aud", "tid", "oid"]},
        )
        assert claims["iss"] == f"{sandbox_with_hub.base_url}/{tenant_id}/v2.0"
        assert claims["tid"] == tenant_id
        assert claims["preferred_username"] == f"admin@{tenant['domain']}"
        assert claims["name"]
        assert claims["ver"] == "2.0"
        assert claims["wids"] == [GLOBAL_ADMINISTRATOR]
        assert claims["exp"] - claims["iat"] == 300
        assert before - 5 <= claims["iat"] <= int(time.time()) + 5


def test_the_hubs_refusal_is_shown_with_its_status(sandbox_with_hub: RunningSandbox, hub: HubStub) -> None:
    hub.answer_status = 403
    hub.answer_body = {"detail": {"message": "A Global Administrator or User Administrator must invite", "field": None}}
    try:
        with _client(sandbox_with_hub) as client:
            tenant = _tenant(client, 0)
            answer = client.post(tenant["invite_url"], data=_form(tenant))
    finally:
        hub.answer_status, hub.answer_body = 202, {"invitation_id": "7d3c0e5e-1111-4a4a-8b8b-000000000001"}
    assert answer.status_code == 502
    assert "The invitation was not sent" in answer.text
    assert "HTTP 403" in answer.text
    assert "A Global Administrator or User Administrator must invite" in answer.text


def test_an_unreachable_hub_gets_a_clear_error(sandbox_without_hub: RunningSandbox) -> None:
    with _client(sandbox_without_hub) as client:
        tenant = _tenant(client, 0)
        answer = client.post(tenant["invite_url"], data=_form(tenant))
    assert answer.status_code == 502
    assert 'role="alert"' in answer.text
    assert "could not be reached" in answer.text
    assert sandbox_without_hub.settings.sandbox_hub_url in answer.text
    assert "no answer" in answer.text
