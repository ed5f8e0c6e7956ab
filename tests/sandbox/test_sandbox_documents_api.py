"""Stage 2 over HTTPS: document and report entities, paging, $batch and the cue services."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from hub_sandbox.figures import (
    cash_balance,
    overdue_purchase_amount,
    overdue_sales_amount,
    overdue_sales_invoices,
    purchase_invoices_due_next_week,
    unposted_sales_invoices,
)
from hub_sandbox.seed import AccountRole, company_book
from hub_sandbox.server import RunningSandbox
from hub_sandbox.tenants import SandboxCompany, TenantCatalogue, tenant_id_for
from tests.sandbox.sandbox_helpers import BUSINESS_DATE

TokenSource = Callable[[str], str]
SAMPLE = tenant_id_for(0)
API = f"/v2.0/{SAMPLE}/Production/api/v2.0"
ODATA = f"/v2.0/{SAMPLE}/Production/ODataV4"
TODAY = BUSINESS_DATE.isoformat()


@pytest.fixture(scope="module")
def company(catalogue: TenantCatalogue) -> SandboxCompany:
    tenant = catalogue.find(str(SAMPLE))
    assert tenant is not None
    return tenant.environments[0].companies[0]


@pytest.fixture(scope="module")
def bc(http: httpx.Client, acquire_token: TokenSource) -> Callable[..., httpx.Response]:
    token = acquire_token(str(SAMPLE))

    def get(url: str, headers: dict[str, str] | None = None, **params: str) -> httpx.Response:
        # params=None, not {}: httpx drops a URL's own query string when given empty params.
        return http.get(url, params=params or None, headers={"Authorization": f"Bearer {token}", **(headers or {})})

    return get


def money(value: Any) -> Decimal:
    return Decimal(str(value))


def test_sales_invoices_carry_bc_fields_and_agree_with_the_books(
    bc: Callable[..., httpx.Response], company: SandboxCompany
) -> None:
    book = company_book(company, BUSINESS_DATE)
    url = f"{API}/companies({company.id})/salesInvoices"
    everything = bc(url).json()["value"]
    assert list(everything[0])[:9] == [
        "@odata.etag", "id", "number", "externalDocumentNumber", "invoiceDate", "postingDate",
        "dueDate", "promisedPayDate", "customerPurchaseOrderReference",
    ]  # fmt: skip
    assert {"remainingAmount", "totalAmountIncludingTax", "status", "customerName", "currencyCode"} <= set(
        everything[0]
    )
    # Owed: Open, and Corrective (BC's status for a corrective invoice, paid or not) with
    # something remaining; the books hold at least one such invoice.
    owed_filter = "(status eq 'Open' or status eq 'Corrective') and remainingAmount ne 0"
    overdue = bc(url, **{"$filter": f"{owed_filter} and dueDate lt {TODAY}"}).json()["value"]
    assert sum((money(i["remainingAmount"]) for i in overdue), Decimal(0)) == overdue_sales_amount(book)
    assert len(overdue) == len(overdue_sales_invoices(book))
    open_ = bc(url, **{"$filter": owed_filter, "$select": "remainingAmount"}).json()["value"]
    assert sum((money(i["remainingAmount"]) for i in open_), Decimal(0)) == book.balance_of(AccountRole.RECEIVABLES)
    drafts = bc(url, **{"$filter": "status eq 'Draft' or status eq 'In_x0020_Review'"}).json()["value"]
    assert len(drafts) == len(unposted_sales_invoices(book))
    assert all(i["currencyCode"] == "" for i in everything)


def test_purchase_invoices_have_no_remaining_amount(bc: Callable[..., httpx.Response], company: SandboxCompany) -> None:
    book = company_book(company, BUSINESS_DATE)
    url = f"{API}/companies({company.id})/purchaseInvoices"
    invoices = bc(url, **{"$filter": "status eq 'Open'"}).json()["value"]
    assert "remainingAmount" not in invoices[0]
    assert sum((money(i["totalAmountIncludingTax"]) for i in invoices), Decimal(0)) == -book.balance_of(
        AccountRole.PAYABLES
    )
    overdue = bc(url, **{"$filter": f"status eq 'Open' and dueDate lt {TODAY}"}).json()["value"]
    assert sum((money(i["totalAmountIncludingTax"]) for i in overdue), Decimal(0)) == overdue_purchase_amount(book)
    next_week = bc(url, **{"$filter": "status eq 'Open' and dueDate ge 2026-05-21 and dueDate le 2026-05-27"}).json()[
        "value"
    ]
    assert len(next_week) == len(purchase_invoices_due_next_week(book))
    assert bc(url, **{"$select": "remainingAmount"}).status_code == 400


def test_customers_vendors_and_financial_details(bc: Callable[..., httpx.Response], company: SandboxCompany) -> None:
    book = company_book(company, BUSINESS_DATE)
    root = f"{API}/companies({company.id})"
    customers = bc(f"{root}/customers").json()["value"]
    details = bc(f"{root}/customerFinancialDetails").json()["value"]
    vendors = bc(f"{root}/vendors").json()["value"]
    assert len(customers) == len(details) == len(book.customers)
    receivables = book.balance_of(AccountRole.RECEIVABLES)
    assert sum((money(c["balanceDue"]) for c in customers), Decimal(0)) == receivables
    assert sum((money(d["balance"]) for d in details), Decimal(0)) == receivables
    assert sum((money(d["overdueAmount"]) for d in details), Decimal(0)) == overdue_sales_amount(book)
    assert sum((money(v["balance"]) for v in vendors), Decimal(0)) == -book.balance_of(AccountRole.PAYABLES)
    assert customers[0]["blocked"] in ("_x0020_", "Ship", "Invoice", "All")
    orders = bc(f"{root}/salesOrders").json()["value"]
    quotes = bc(f"{root}/salesQuotes").json()["value"]
    assert len(orders) == len(book.documents.sales_orders)
    assert {q["status"] for q in quotes} <= {"Draft", "Sent", "Accepted", "Expired_x0020_"}


def test_aged_receivables_through_the_api(bc: Callable[..., httpx.Response], company: SandboxCompany) -> None:
    book = company_book(company, BUSINESS_DATE)
    url = f"{API}/companies({company.id})/agedAccountsReceivables"
    rows = bc(url).json()["value"]
    total = rows[-1]
    assert total["customerId"] == str(uuid.UUID(int=0))
    assert total["name"] == "Total"
    assert total["agedAsOfDate"] == TODAY
    assert total["periodLengthFilter"] == "30D"
    assert money(total["balanceDue"]) == book.balance_of(AccountRole.RECEIVABLES)
    filtered = bc(url, **{"$filter": "agedAsOfDate eq 2026-06-30 and periodLengthFilter eq '2W'"}).json()["value"]
    assert filtered[-1]["agedAsOfDate"] == "2026-06-30"
    assert filtered[-1]["periodLengthFilter"] == "2W"
    assert money(filtered[-1]["currentAmount"]) < money(total["currentAmount"])
    single = bc(f"{url}({rows[0]['customerId']})")
    assert single.status_code == 200
    assert single.json()["customerNumber"] == rows[0]["customerNumber"]
    payables = bc(f"{API}/companies({company.id})/agedAccountsPayables").json()["value"]
    assert money(payables[-1]["balanceDue"]) == -book.balance_of(AccountRole.PAYABLES)
    assert "period1Label" not in payables[-1]


def test_statements_through_the_api(bc: Callable[..., httpx.Response], company: SandboxCompany) -> None:
    root = f"{API}/companies({company.id})"
    sheet = bc(f"{root}/balanceSheets", **{"$orderby": "lineNumber", "$filter": "dateFilter eq 2026-04-30"}).json()[
        "value"
    ]
    assert list(sheet[0]) == [
        "@odata.etag",
        "id",
        "lineNumber",
        "display",
        "balance",
        "lineType",
        "indentation",
        "dateFilter",
    ]
    assert {line["lineType"] for line in sheet} == {"header", "detail", "total", "spacer"}
    assert all(line["dateFilter"] == "2026-04-30" for line in sheet)
    by_name = {line["display"]: money(line["balance"]) for line in sheet}
    assert by_name["Total Assets"] == by_name["Total Liabilities and Equity"]
    income = bc(
        f"{root}/incomeStatements", **{"$filter": "dateFilter ge 2026-01-01 and dateFilter le 2026-05-20"}
    ).json()["value"]
    assert income and "netChange" in income[0]
    for entity_set in ("cashFlowStatements", "retainedEarningsStatements"):
        assert bc(f"{root}/{entity_set}").status_code == 200
    trial = bc(f"{root}/trialBalances", **{"$filter": "accountType eq 'Posting'"}).json()["value"]
    assert all(isinstance(row["totalDebit"], str) for row in trial)


def follow(bc: Callable[..., httpx.Response], http: httpx.Client, first: httpx.Response) -> Iterator[dict[str, Any]]:
    page = first
    while True:
        body = page.json()
        yield from body["value"]
        link = body.get("@odata.nextLink")
        if not link:
            return
        page = bc(link, headers={"Prefer": "odata.maxpagesize=5"})


def test_server_driven_paging(
    bc: Callable[..., httpx.Response],
    http: httpx.Client,
    sandbox_server: RunningSandbox,
    company: SandboxCompany,
) -> None:
    url = f"{API}/companies({company.id})/salesInvoices"
    params = {"$filter": "status eq 'Open' or status eq 'Paid'", "$select": "id,number"}
    unpaged = bc(url, **params).json()
    assert "@odata.nextLink" not in unpaged
    first = bc(url, headers={"Prefer": "odata.maxpagesize=5"}, **params)
    assert first.headers["Preference-Applied"] == "odata.maxpagesize=5"
    body = first.json()
    assert len(body["value"]) == 5
    link = body["@odata.nextLink"]
    assert link.startswith(f"{sandbox_server.base_url}{API}/companies({company.id})/salesInvoices?")
    assert "$skiptoken=" in link and "$select=id,number" in link
    assert list(follow(bc, http, first)) == unpaged["value"]
    # With $top the client slices: no nextLink, as BC does.
    topped = bc(url, headers={"Prefer": "odata.maxpagesize=2"}, **{"$top": "4"}).json()
    assert len(topped["value"]) == 4 and "@odata.nextLink" not in topped
    assert bc(url, **{"$skiptoken": "forged"}).status_code == 400


def test_batch(http: httpx.Client, acquire_token: TokenSource, company: SandboxCompany) -> None:
    headers = {"Authorization": f"Bearer {acquire_token(str(SAMPLE))}"}
    requests = [
        {"id": "1", "method": "GET", "url": f"companies({company.id})/accounts?$filter=subCategory eq 'Cash'&$select=number"},
        {"id": "2", "method": "GET", "url": f"companies({company.id})/widgets"},
        {"id": "3", "method": "GET", "url": f"companies({company.id})/salesInvoices?$select=number", "headers": {"Prefer": "odata.maxpagesize=3"}},
    ]  # fmt: skip
    response = http.post(f"{API}/$batch", json={"requests": requests}, headers=headers)
    assert response.status_code == 200, response.text
    answers = {r["id"]: r for r in response.json()["responses"]}
    assert answers["1"]["status"] == 200
    numbers = {a["number"] for a in answers["1"]["body"]["value"]}
    assert numbers >= {"10110", "10120", "10130"}
    assert answers["2"]["status"] == 404
    assert answers["2"]["body"]["error"]["code"] == "BadRequest_NotFound"
    assert answers["3"]["headers"]["Preference-Applied"] == "odata.maxpagesize=3"
    assert "@odata.nextLink" in answers["3"]["body"]

    too_many = [{"id": str(n), "method": "GET", "url": "companies"} for n in range(101)]
    refused = http.post(f"{API}/$batch", json={"requests": too_many}, headers=headers)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "BadRequest"
    assert http.post(f"{API}/$batch", content=b"not json", headers=headers).status_code == 400


def test_cue_services_agree_with_the_api(bc: Callable[..., httpx.Response], company: SandboxCompany) -> None:
    book = company_book(company, BUSINESS_DATE)
    companies = bc(f"{ODATA}/Company").json()["value"]
    assert [c["Name"] for c in companies] == ["CRONUS UK Ltd.", "CRONUS USA, Inc."]
    assert set(companies[0]) >= {"Name", "Display_Name", "Evaluation_Company"}

    activity = bc(f"{ODATA}/Company('{company.name}')/AccountantPortalActivityCues").json()["value"][0]
    assert money(activity["OverdueSalesInvoiceAmountDecimal"]) == overdue_sales_amount(book)
    assert money(activity["OverduePurchInvoiceAmountDecimal"]) == overdue_purchase_amount(book)
    assert activity["OverdueSalesInvoiceAmount"] == f"£{overdue_sales_amount(book):,.2f}".ljust(30)
    assert activity["CurrencySymbol"] == "£"
    assert activity["PurchInvoicesDueNextWeekAmount"].strip() == str(len(purchase_invoices_due_next_week(book)))
    assert activity["OverdueSalesInvoiceStyle"] == "Unfavorable"

    finance = bc(f"{ODATA}/Company('{company.name}')/AccountantPortalFinanceCues").json()["value"][0]
    assert money(finance["CashAccountsBalanceAmountDecimal"]) == cash_balance(book)
    assert finance["OverdueSalesDocumentsAmount"].strip() == str(len(overdue_sales_invoices(book)))
    assert "CashAccountsBalanceStyle" in finance


def test_bc30_tenant_has_no_cue_services(
    http: httpx.Client, acquire_token: TokenSource, catalogue: TenantCatalogue
) -> None:
    tenant = catalogue.tenants[1]
    name = tenant.environments[0].companies[0].name
    # In English whatever the tenant's own language, as the hub asks.
    headers = {"Authorization": f"Bearer {acquire_token(str(tenant.id))}", "Accept-Language": "en-US"}
    cues = f"/v2.0/{tenant.id}/Production/ODataV4/Company('{name}')/AccountantPortalActivityCues"
    assert http.get(cues, headers=headers).status_code == 200
    try:
        changed = http.put(f"/_sandbox/tenants/{tenant.id}/bc-version", json={"major": 30}).json()
        assert changed["bc_version"].startswith("30.") and changed["cue_services_published"] is False
        refused = http.get(cues, headers=headers)
        assert refused.status_code == 404
        error = refused.json()["error"]
        assert error["code"] == "BadRequest_NotFound"
        assert error["message"].startswith("No HTTP resource was found that matches the request URI")
        companies = http.get(f"/v2.0/{tenant.id}/Production/api/v2.0/companies", headers=headers).json()
        assert companies["value"][0]["systemVersion"].startswith("30.")
        assert http.get(f"/v2.0/{tenant.id}/Production/ODataV4/Company", headers=headers).status_code == 200
    finally:
        http.put(f"/_sandbox/tenants/{tenant.id}/bc-version", json={"major": 29})
