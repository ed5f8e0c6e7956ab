"""The sandbox's web-client pages and its admin API."""

from __future__ import annotations

import httpx

from hub_sandbox.server import RunningSandbox
from hub_sandbox.tenants import SAMPLE_TENANT_DOMAIN, TenantCatalogue, tenant_id_for


def test_health(http: httpx.Client) -> None:
    response = http.get("/_sandbox/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "tenants": 3, "companies": 8, "business_date": "2026-05-20"}


def test_tenant_list(sandbox_server: RunningSandbox, http: httpx.Client, catalogue: TenantCatalogue) -> None:
    body = http.get("/_sandbox/tenants").json()

    assert body["web_client_base"] == f"{sandbox_server.base_url}/bc"
    tenants = body["tenants"]
    assert [t["id"] for t in tenants] == [str(t.id) for t in catalogue.tenants]
    sample = tenants[0]
    assert sample["domain"] == SAMPLE_TENANT_DOMAIN
    assert sample["display_name"] == "CRONUS Sample Client"
    assert sample["consented"] is True
    assert sample["authority"] == f"{sandbox_server.base_url}/{tenant_id_for(0)}"
    production = sample["environments"][0]
    assert production["name"] == "Production"
    assert production["client_url"] == f"{sandbox_server.base_url}/bc/{SAMPLE_TENANT_DOMAIN}/Production"
    assert production["api_url"] == f"{sandbox_server.base_url}/v2.0/{tenant_id_for(0)}/Production/api/v2.0"
    assert [c["name"] for c in production["companies"]] == ["CRONUS UK Ltd.", "CRONUS USA, Inc."]
    assert [t["consented"] for t in tenants] == [True, True, False]


def test_web_client_page_for_a_hub_link(http: httpx.Client) -> None:
    response = http.get(
        f"/bc/{SAMPLE_TENANT_DOMAIN}/Production",
        params={"company": "CRONUS USA, Inc.", "page": "43", "bookmark": "abc"},
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>Business Central sandbox — CRONUS USA, Inc. — page 43 Sales Invoice</title>" in response.text


def test_web_client_defaults_and_not_found(http: httpx.Client) -> None:
    role_center = http.get(f"/bc/{tenant_id_for(0)}")
    assert role_center.status_code == 200
    assert "CRONUS UK Ltd. — page 9022 Business Manager Role Center" in role_center.text

    assert http.get("/bc/nobody.onmicrosoft.com/Production").status_code == 404
    assert http.get(f"/bc/{SAMPLE_TENANT_DOMAIN}/Staging").status_code == 404
    missing = http.get(f"/bc/{SAMPLE_TENANT_DOMAIN}/Production", params={"company": "Nope Ltd"})
    assert missing.status_code == 404
