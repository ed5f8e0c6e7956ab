"""Test Client URL through the API, the registry, a fetcher and the sandbox: OK with the
companies and the latency, or the failure kind with its fix, for each case of Microsoft's
troubleshooting page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Sandbox
from tests.e2e.conftest import Hub
from tests.support.connect import add_connected_client, client_admin

pytestmark = pytest.mark.e2e


@pytest.fixture
def admin(sandbox: Sandbox) -> Iterator[httpx.Client]:
    client = httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls(), timeout=10)
    yield client
    client.delete("/faults").raise_for_status()


def _tenant(admin: httpx.Client, *, consented: bool) -> dict[str, Any]:
    tenants: list[dict[str, Any]] = admin.get("/tenants").json()["tenants"]
    return next(t for t in tenants if t["consented"] is consented and t["domain"] != "cronus-sample.onmicrosoft.com")


def _url(tenant: dict[str, Any]) -> str:
    return str(next(e for e in tenant["environments"] if e["name"] == "Production")["client_url"])


TESTER = "ivan@northwind-accounting.example"


@pytest.fixture(scope="module", autouse=True)
def granted(hub: Hub, sandbox: Sandbox) -> None:
    """The testing firms' clients granted them access (Connect), so a test reaches BC.

    The tenant without the app's consent is connected by one of its users who is not its
    administrator: the firm is allowed, but the app still has no consent there.
    """
    with httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls(), timeout=10) as admin:
        tenants = [t for t in admin.get("/tenants").json()["tenants"] if t["domain"] != "cronus-sample.onmicrosoft.com"]
    for email in (TESTER, "judy@contoso-accounting.example"):
        api = hub.client(email)
        for tenant in tenants:
            card = {"name": tenant["display_name"], "client_url": _url(tenant)}
            who = client_admin(tenant["domain"]) if tenant["consented"] else f"accounts@{tenant['domain']}"
            add_connected_client(sandbox, api, card, signing_in=who)


def _test(hub: Hub, url: str, email: str = TESTER) -> httpx.Response:
    return hub.client(email).post("/api/v1/connection-tests", json={"client_url": url}, timeout=40)


def test_a_good_url_lists_the_companies_and_the_latency(hub: Hub, admin: httpx.Client) -> None:
    tenant = _tenant(admin, consented=True)
    answer = _test(hub, _url(tenant))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ok"
    assert body["latency_ms"] is not None
    production = next(e for e in tenant["environments"] if e["name"] == "Production")
    assert {c["name"] for c in body["companies"]} == {c["name"] for c in production["companies"]}


def test_an_invalid_url_says_what_is_wrong_at_once(hub: Hub) -> None:
    answer = _test(hub, "https://businesscentral.dynamics.com/Production")
    assert answer.status_code == 422
    assert answer.json()["detail"]["field"] == "client_url"
    assert "no tenant" in answer.json()["detail"]["message"]


@pytest.mark.parametrize(
    ("case", "kind"),
    [
        ("offline while upgrading", "environment_offline"),
        ("credentials rejected", "credentials_rejected"),
        ("no such environment", "environment_not_found"),
    ],
)
def test_troubleshooting_cases(hub: Hub, sandbox: Sandbox, admin: httpx.Client, case: str, kind: str) -> None:
    tenant = _tenant(admin, consented=True)
    fault = {
        "offline while upgrading": {"kind": "upgrading", "retry_after_seconds": 1},
        "credentials rejected": {"kind": "invalid_credentials"},
        "no such environment": {"kind": "environment_removed"},
    }[case]
    admin.put(f"/tenants/{tenant['id']}/faults", json=fault).raise_for_status()
    answer = _test(hub, _url(tenant))
    assert answer.status_code == 200, answer.text
    failure = answer.json()["failure"]
    assert answer.json()["status"] == "failed"
    assert failure["kind"] == kind
    assert failure["fix"]
    assert failure["http_status"] is not None


def test_invitation_not_accepted_means_no_consent(hub: Hub, admin: httpx.Client) -> None:
    answer = _test(hub, _url(_tenant(admin, consented=False)))
    assert answer.json()["failure"]["kind"] == "consent_missing"
    assert "Invite External Accountant" in answer.json()["failure"]["fix"]


def test_no_access_to_every_company(hub: Hub, admin: httpx.Client) -> None:
    """The test lists the companies; a refresh then reports the one it cannot read."""
    tenant = _tenant(admin, consented=True)
    admin.put(f"/tenants/{tenant['id']}/faults", json={"kind": "company_forbidden"}).raise_for_status()
    answer = _test(hub, _url(tenant))
    assert answer.json()["status"] == "ok", "the companies list stays visible, as in BC"


def test_a_firm_without_a_grant_learns_only_that_it_must_ask(hub: Hub, admin: httpx.Client) -> None:
    answer = _test(hub, _url(_tenant(admin, consented=True)), email="lena@ungranted-accounting.example")
    assert answer.json()["status"] == "failed"
    assert answer.json()["failure"]["kind"] == "access_not_granted"
    assert not answer.json().get("companies")


def test_another_firms_test_result_is_not_found(hub: Hub, admin: httpx.Client) -> None:
    answer = _test(hub, _url(_tenant(admin, consented=True)), email="judy@contoso-accounting.example")
    test_id = answer.json()["test_id"]
    own = hub.client("judy@contoso-accounting.example").get(f"/api/v1/connection-tests/{test_id}")
    assert own.json()["status"] == "ok"
    other = hub.client("kevin@fabrikam-audit.example").get(f"/api/v1/connection-tests/{test_id}")
    assert other.status_code == 404
