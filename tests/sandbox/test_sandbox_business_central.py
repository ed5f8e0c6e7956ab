"""The Business Central API v2.0 stand-in, over HTTPS with tokens from the Entra stand-in."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from decimal import Decimal

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from hub_sandbox.certificates import ensure_signing_key
from hub_sandbox.seed import AccountRole, company_book
from hub_sandbox.server import RunningSandbox
from hub_sandbox.tenants import (
    SAMPLE_TENANT_DOMAIN,
    SandboxCompany,
    TenantCatalogue,
    tenant_id_for,
)
from hub_sandbox.tokens import TokenIssuer
from tests.sandbox.sandbox_helpers import BUSINESS_DATE

SAMPLE_TENANT_ID = tenant_id_for(0)
OTHER_TENANT_ID = tenant_id_for(1)
CORRELATION = re.compile(r"  CorrelationId:  ([0-9a-f-]{36})\.$")

TokenSource = Callable[[str], str]


def api(tenant: object = SAMPLE_TENANT_ID, environment: str = "Production") -> str:
    return f"/v2.0/{tenant}/{environment}/api/v2.0"


def get(http: httpx.Client, token: str, url: str, **params: str) -> httpx.Response:
    return http.get(url, params=params, headers={"Authorization": f"Bearer {token}"})


def first_company(catalogue: TenantCatalogue) -> SandboxCompany:
    tenant = catalogue.find(str(SAMPLE_TENANT_ID))
    assert tenant is not None
    return tenant.environments[0].companies[0]


def assert_bc_error(response: httpx.Response, status: int, code: str) -> str:
    """Check BC's error shape; return the message."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    match = CORRELATION.search(error["message"])
    assert match, error["message"]
    assert response.headers["ms-correlation-x"] == match.group(1)
    assert response.headers["request-id"] == match.group(1)
    return str(error["message"])


def test_companies_listing(http: httpx.Client, acquire_token: TokenSource, catalogue: TenantCatalogue) -> None:
    response = get(http, acquire_token(str(SAMPLE_TENANT_ID)), f"{api()}/companies")

    assert response.status_code == 200
    body = response.json()
    assert body["@odata.context"].endswith(f"{api()}/$metadata#companies")
    names = [company["name"] for company in body["value"]]
    assert names == ["CRONUS UK Ltd.", "CRONUS USA, Inc."]
    company = body["value"][0]
    assert list(company) == [
        "@odata.etag", "id", "systemVersion", "timestamp", "name", "displayName",
        "businessProfileId", "systemCreatedAt", "systemCreatedBy", "systemModifiedAt",
        "systemModifiedBy",
    ]  # fmt: skip
    assert company["id"] == str(first_company(catalogue).id)
    assert company["@odata.etag"].startswith('W/"')
    assert company["systemCreatedAt"].endswith("Z")


def test_tenant_domain_in_path_and_tenantless_form(http: httpx.Client, acquire_token: TokenSource) -> None:
    token = acquire_token(SAMPLE_TENANT_DOMAIN)
    by_domain = get(http, token, f"{api(SAMPLE_TENANT_DOMAIN)}/companies")
    tenantless = get(http, token, "/v2.0/production/api/v2.0/companies")

    assert by_domain.status_code == tenantless.status_code == 200
    assert by_domain.json()["value"] == tenantless.json()["value"]


def test_company_information_and_general_ledger_setup(
    http: httpx.Client, acquire_token: TokenSource, catalogue: TenantCatalogue
) -> None:
    token = acquire_token(str(SAMPLE_TENANT_ID))
    company = first_company(catalogue)

    information = get(http, token, f"{api()}/companies({company.id})/companyInformation")
    setup = get(http, token, f"{api()}/companies({company.id})/generalLedgerSetup")

    assert information.status_code == setup.status_code == 200
    (info,) = information.json()["value"]
    assert info["displayName"] == "CRONUS UK Ltd."
    assert info["currencyCode"] == "GBP"
    assert info["currentFiscalYearStartDate"] == "2026-01-01"
    (ledger,) = setup.json()["value"]
    assert ledger["localCurrencyCode"] == "GBP"
    assert ledger["localCurrencySymbol"] == "£"
    assert ledger["allowPostingFrom"] == "0001-01-01"


def test_accounting_periods_answer_the_fiscal_year_holding_a_date(
    http: httpx.Client, acquire_token: TokenSource, catalogue: TenantCatalogue
) -> None:
    """The query the hub's workbooks ask: the last period on or before a date that opens a
    fiscal year."""
    token = acquire_token(str(SAMPLE_TENANT_ID))
    company = first_company(catalogue)
    url = f"{api()}/companies({company.id})/accountingPeriods"
    every = get(http, token, url)
    assert every.status_code == 200
    assert len(every.json()["value"]) == 48  # two closed years, the current one, the next
    opened = get(
        http,
        token,
        url,
        **{
            "$filter": "newFiscalYear eq true and startingDate le 2025-11-30",
            "$orderby": "startingDate desc",
            "$top": "1",
            "$select": "startingDate",
        },
    )
    assert opened.status_code == 200, opened.text
    assert [period["startingDate"] for period in opened.json()["value"]] == ["2025-01-01"]
    [closed] = [period for period in every.json()["value"] if period["startingDate"] == "2025-12-01"]
    assert (closed["name"], closed["closed"], closed["newFiscalYear"]) == ("December", True, False)


def test_accounts_filter_and_select(http: httpx.Client, acquire_token: TokenSource, catalogue: TenantCatalogue) -> None:
    company = first_company(catalogue)
    response = get(
        http,
        acquire_token(str(SAMPLE_TENANT_ID)),
        f"{api()}/companies({company.id})/accounts",
        **{
            "$filter": "category eq 'Assets' and accountType eq 'Posting' and subCategory eq 'Cash'",
            "$select": "number,displayName,netChange",
        },
    )

    assert response.status_code == 200
    body = response.json()
    assert body["@odata.context"].endswith(f"#companies({company.id})/accounts(number,displayName,netChange)")
    accounts = body["value"]
    assert all(set(a) == {"@odata.etag", "number", "displayName", "netChange"} for a in accounts)
    expected = company_book(company, BUSINESS_DATE).accounts_with_role(AccountRole.CASH)
    assert [a["number"] for a in accounts] == [a.number for a in expected]
    assert [Decimal(str(a["netChange"])) for a in accounts] == [a.net_change for a in expected]
    assert len(accounts) >= 3


def test_accounts_through_company_query_parameter(
    http: httpx.Client, acquire_token: TokenSource, catalogue: TenantCatalogue
) -> None:
    company = first_company(catalogue)
    token = acquire_token(str(SAMPLE_TENANT_ID))
    scoped = get(http, token, f"{api()}/companies({company.id})/accounts")
    by_query = get(http, token, f"{api()}/accounts", company=str(company.id))

    assert by_query.status_code == 200
    assert by_query.json()["@odata.context"].endswith("/$metadata#accounts")
    assert by_query.json()["value"] == scoped.json()["value"]


@pytest.mark.parametrize(
    ("filter_text", "expected_numbers"),
    [
        ("number ge '20000' and number lt '30000' and accountType eq 'Posting'", None),
        ("category eq 'Cost_x0020_of_x0020_Goods_x0020_Sold' and accountType eq 'Posting'",
         ["50100", "50200"]),
        ("number eq '10110' or number eq '10120'", ["10110", "10120"]),
        ("(number eq '40100') and netChange lt 0", ["40100"]),
        ("blocked eq true and netChange eq 0", None),
        ("lastModifiedDateTime gt 2000-01-01T00:00:00Z and accountType ne 'Posting'", None),
    ],
)  # fmt: skip
def test_filter_operators(
    http: httpx.Client,
    acquire_token: TokenSource,
    catalogue: TenantCatalogue,
    filter_text: str,
    expected_numbers: list[str] | None,
) -> None:
    company = first_company(catalogue)
    response = get(
        http,
        acquire_token(str(SAMPLE_TENANT_ID)),
        f"{api()}/companies({company.id})/accounts",
        **{"$filter": filter_text, "$select": "number"},
    )

    assert response.status_code == 200, response.text
    numbers = [a["number"] for a in response.json()["value"]]
    if expected_numbers is not None:
        assert numbers == expected_numbers
    if filter_text.startswith("number ge"):
        assert numbers
        assert all("20000" <= n < "30000" for n in numbers)


@pytest.mark.parametrize(
    ("filter_text", "message_start"),
    [
        ("category eq", "Syntax error at position"),
        ("colour eq 'Red'", "Could not find a property named 'colour' on type 'Microsoft.NAV.account'."),
        ("netChange eq 'lots'", "A binary operator with incompatible types was detected."),
        ("number eq '10110' or category eq 'Assets'",
         "The 'OR' operator is not supported on distinct fields"),
        ("contains(displayName, 'Bank')", "The sandbox does not support the function 'contains'"),
        ("category eq 'Gold'", "The string 'Gold' is not a valid enumerated type constant"),
    ],
)  # fmt: skip
def test_bad_filters_are_bc_bad_requests(
    http: httpx.Client,
    acquire_token: TokenSource,
    catalogue: TenantCatalogue,
    filter_text: str,
    message_start: str,
) -> None:
    company = first_company(catalogue)
    response = get(
        http,
        acquire_token(str(SAMPLE_TENANT_ID)),
        f"{api()}/companies({company.id})/accounts",
        **{"$filter": filter_text},
    )
    assert assert_bc_error(response, 400, "BadRequest").startswith(message_start)


def test_token_of_another_tenant_is_rejected(http: httpx.Client, acquire_token: TokenSource) -> None:
    other_token = acquire_token(str(OTHER_TENANT_ID))
    response = get(http, other_token, f"{api(SAMPLE_TENANT_ID)}/companies")

    message = assert_bc_error(response, 401, "Authentication_InvalidCredentials")
    assert message.startswith("The server has rejected the client credentials.")


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-jwt", "Basic dXNlcjpwYXNz"])
def test_missing_or_malformed_token_is_rejected(http: httpx.Client, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = http.get(f"{api()}/companies", headers=headers)
    assert_bc_error(response, 401, "Authentication_InvalidCredentials")


def test_token_signed_by_another_key_is_rejected(http: httpx.Client, acquire_token: TokenSource) -> None:
    genuine = jwt.decode(acquire_token(str(SAMPLE_TENANT_ID)), options={"verify_signature": False})
    foreign_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(genuine, foreign_key, algorithm="RS256")
    assert_bc_error(get(http, forged, f"{api()}/companies"), 401, "Authentication_InvalidCredentials")


def test_expired_token_is_rejected(sandbox_server: RunningSandbox, http: httpx.Client) -> None:
    issuer = TokenIssuer(ensure_signing_key(sandbox_server.settings.sandbox_state_dir))
    expired = issuer.issue_app_token(
        tenant_id=SAMPLE_TENANT_ID,
        client_id=sandbox_server.settings.entra_client_id,
        service_principal_id=uuid.uuid4(),
        now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2),
    )
    response = get(http, expired.access_token, f"{api()}/companies")
    assert_bc_error(response, 401, "Authentication_InvalidCredentials")


def test_unknown_environment(http: httpx.Client, acquire_token: TokenSource) -> None:
    response = get(http, acquire_token(str(SAMPLE_TENANT_ID)), f"{api(environment='Staging')}/companies")
    message = assert_bc_error(response, 404, "NoEnvironment")
    assert message.startswith("Environment does not exist.")


def test_environment_names_ignore_case(http: httpx.Client, acquire_token: TokenSource) -> None:
    response = get(http, acquire_token(str(SAMPLE_TENANT_ID)), f"{api(environment='sandbox')}/companies")
    assert response.status_code == 200
    assert [c["name"] for c in response.json()["value"]] == ["CRONUS UK Ltd."]


def test_unknown_company(http: httpx.Client, acquire_token: TokenSource) -> None:
    token = acquire_token(str(SAMPLE_TENANT_ID))
    stranger = uuid.uuid4()
    assert_bc_error(get(http, token, f"{api()}/companies({stranger})"), 404, "BadRequest_NotFound")
    assert_bc_error(get(http, token, f"{api()}/companies({stranger})/accounts"), 404, "BadRequest_NotFound")
    assert_bc_error(get(http, token, f"{api()}/accounts", company=str(stranger)), 404, "BadRequest_NotFound")


def test_company_of_another_environment_is_not_found(
    http: httpx.Client, acquire_token: TokenSource, catalogue: TenantCatalogue
) -> None:
    company = first_company(catalogue)  # lives in Production
    response = get(http, acquire_token(str(SAMPLE_TENANT_ID)), f"{api(environment='Sandbox')}/companies({company.id})")
    assert_bc_error(response, 404, "BadRequest_NotFound")


def test_entity_set_without_company(http: httpx.Client, acquire_token: TokenSource) -> None:
    response = get(http, acquire_token(str(SAMPLE_TENANT_ID)), f"{api()}/accounts")
    assert_bc_error(response, 400, "Internal_CompanyNotFound")


def test_unknown_entity_set(http: httpx.Client, acquire_token: TokenSource, catalogue: TenantCatalogue) -> None:
    company = first_company(catalogue)
    response = get(http, acquire_token(str(SAMPLE_TENANT_ID)), f"{api()}/companies({company.id})/widgets")
    message = assert_bc_error(response, 404, "BadRequest_NotFound")
    assert message.startswith("Resource not found for the segment 'widgets'.")


def test_single_company_and_single_account(
    http: httpx.Client, acquire_token: TokenSource, catalogue: TenantCatalogue
) -> None:
    company = first_company(catalogue)
    token = acquire_token(str(SAMPLE_TENANT_ID))
    single = get(http, token, f"{api()}/companies({company.id})")
    assert single.status_code == 200
    assert single.json()["@odata.context"].endswith("#companies/$entity")
    assert single.json()["name"] == company.name

    receivables = company_book(company, BUSINESS_DATE).accounts_with_role(AccountRole.RECEIVABLES)[0]
    account = get(http, token, f"{api()}/companies({company.id})/accounts({receivables.id})")
    assert account.status_code == 200
    assert account.json()["number"] == receivables.number
    assert Decimal(str(account.json()["netChange"])) == sum(
        (item.amount for item in company_book(company, BUSINESS_DATE).open_receivables), Decimal(0)
    )


def test_unsupported_query_option(http: httpx.Client, acquire_token: TokenSource, catalogue: TenantCatalogue) -> None:
    company = first_company(catalogue)
    response = get(
        http,
        acquire_token(str(SAMPLE_TENANT_ID)),
        f"{api()}/companies({company.id})/accounts",
        **{"$expand": "x"},
    )
    assert_bc_error(response, 400, "BadRequest")
