"""BC API v2.0 webhooks against the real sandbox over HTTPS and a real subscriber over HTTP:
subscriptions, the handshake, renewal with If-Match, expiry, the limit, batched and
collection notifications, retries, and books that change through the admin API."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub_sandbox.server import RunningSandbox, serve_in_background
from hub_sandbox.tenants import tenant_id_for
from tests.sandbox.sandbox_helpers import BC_SCOPE, BUSINESS_DATE, CLIENT_ID, msal_app, sandbox_settings
from tests.sandbox.webhook_subscriber import Behaviour, Subscriber, running_subscriber

SAMPLE = tenant_id_for(0)
ROOT = f"/v2.0/{SAMPLE}/Production/api/v2.0"
COLLECTION_THRESHOLD = 50
DELAY_SECONDS = 0.5
THREE_DAYS = 3 * 24 * 3600


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    state: Path = tmp_path_factory.mktemp("webhooks-state")
    settings = sandbox_settings(
        state,
        sandbox_webhook_delay_seconds=DELAY_SECONDS,
        sandbox_webhook_timeout_seconds=1.0,
        sandbox_webhook_retry_seconds=0.3,
        sandbox_webhook_collection_threshold=COLLECTION_THRESHOLD,
    )
    with serve_in_background(settings) as running:
        yield running


@pytest.fixture(scope="module")
def subscriber() -> Iterator[Subscriber]:
    with running_subscriber() as running:
        yield running


@pytest.fixture(scope="module")
def bc(server: RunningSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, verify=server.ssl_context(), timeout=15) as http:
        token = msal_app(server, str(SAMPLE), http).acquire_token_for_client(scopes=[BC_SCOPE])["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        yield http


@pytest.fixture(scope="module")
def admin(server: RunningSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.base_url}/_sandbox", verify=server.ssl_context(), timeout=15) as http:
        yield http


@pytest.fixture(scope="module")
def company(bc: httpx.Client) -> str:
    company_id: str = bc.get(f"{ROOT}/companies").raise_for_status().json()["value"][0]["id"]
    return company_id


@pytest.fixture(autouse=True)
def _fresh(admin: httpx.Client) -> None:
    admin.delete("/webhooks/subscriptions").raise_for_status()


def _subscribe(bc: httpx.Client, url: str, resource: str, client_state: str = "s3cret") -> httpx.Response:
    return bc.post(
        f"{ROOT}/subscriptions", json={"notificationUrl": url, "resource": resource, "clientState": client_state}
    )


def _resource(company: str, entity_set: str) -> str:
    return f"/api/v2.0/companies({company})/{entity_set}"


def _error(response: httpx.Response) -> dict[str, str]:
    error: dict[str, str] = response.json()["error"]
    assert "CorrelationId" in error["message"]
    return error


def _wait_for_log(admin: httpx.Client, predicate: Any, timeout: float = 15.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log: list[dict[str, Any]] = admin.get("/webhooks/deliveries").json()
        if predicate(log):
            return log
        time.sleep(0.05)
    raise AssertionError(f"the delivery log never matched: {admin.get('/webhooks/deliveries').json()}")


def test_create_runs_the_handshake_and_answers_the_subscription(
    bc: httpx.Client, admin: httpx.Client, subscriber: Subscriber, company: str
) -> None:
    url = subscriber.url("created")
    response = _subscribe(bc, url, _resource(company, "salesInvoices"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["ETag"] == body["@odata.etag"]
    assert body["@odata.context"].endswith("/api/v2.0/$metadata#subscriptions/$entity")
    assert set(body) == {
        "@odata.context", "@odata.etag", "subscriptionId", "notificationUrl", "resource", "timestamp", "userId",
        "lastModifiedDateTime", "clientState", "expirationDateTime", "systemCreatedAt", "systemCreatedBy",
        "systemModifiedAt", "systemModifiedBy",
    }  # fmt: skip
    assert body["notificationUrl"] == url and body["clientState"] == "s3cret"
    assert body["resource"] == _resource(company, "salesInvoices")
    assert isinstance(body["timestamp"], int)
    # The caller: the hub app's service principal in the tenant.
    assert body["userId"] == str(uuid.uuid5(SAMPLE, f"servicePrincipal/{CLIENT_ID}"))
    assert body["expirationDateTime"] > body["lastModifiedDateTime"]
    path, token, handshake_body = subscriber.handshakes[-1]
    assert path == "/hooks/created" and token and handshake_body == b""
    assert admin.get("/webhooks/handshakes").json()[-1]["ok"] is True
    # Without the leading slash too.
    assert _subscribe(bc, url, f"api/v2.0/companies({company})/customers").status_code == 201
    listed = admin.get("/webhooks/subscriptions").json()["subscriptions"]
    assert {s["tenant_id"] for s in listed} == {str(SAMPLE)} and {s["environment"] for s in listed} == {"Production"}


@pytest.mark.parametrize(
    ("behaviour", "detail"),
    [
        (Behaviour(handshake_status=404), "answered 404"),
        (Behaviour(handshake_answer="not the token"), "not the validation token"),
        (Behaviour(handshake_delay_seconds=1.5), "timed out"),
        # Each byte well within the 1 s, the whole answer (32 bytes) not: BC's limit is
        # for the whole call.
        (Behaviour(handshake_trickle_seconds=0.1), "timed out"),
    ],
)
def test_a_failing_handshake_refuses_the_subscription(
    bc: httpx.Client, subscriber: Subscriber, company: str, behaviour: Behaviour, detail: str
) -> None:
    response = _subscribe(
        bc, subscriber.url(f"failing-{detail.replace(' ', '-')}", behaviour), _resource(company, "customers")
    )
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "BadRequest" and "did not validate" in error["message"] and detail in error["message"]
    assert bc.get(f"{ROOT}/subscriptions").json()["value"] == []


def test_an_unreachable_notification_url_refuses_the_subscription(bc: httpx.Client, company: str) -> None:
    response = _subscribe(bc, "http://127.0.0.1:9/nobody-listens", _resource(company, "customers"))
    assert response.status_code == 400
    assert "could not be reached" in _error(response)["message"]


@pytest.mark.parametrize(
    ("resource", "client_state"),
    [
        ("/api/v2.0/companies({company})/agedAccountsReceivables", ""),
        ("/api/v2.0/companies({company})/trialBalances", ""),
        ("/api/v2.0/companies(00000000-0000-0000-0000-00000000abcd)/customers", ""),
        ("/api/v2.0/companies({company})/customers", "x" * 2049),
    ],
)
def test_invalid_subscriptions_are_refused_with_400(
    bc: httpx.Client, subscriber: Subscriber, company: str, resource: str, client_state: str
) -> None:
    response = _subscribe(bc, subscriber.url("invalid"), resource.format(company=company), client_state)
    assert response.status_code == 400
    assert _error(response)["code"] == "BadRequest"
    relative = bc.post(f"{ROOT}/subscriptions", json={"notificationUrl": "/hooks", "resource": "x"})
    assert relative.status_code == 400


def test_list_get_renew_and_delete_with_if_match(
    bc: httpx.Client, admin: httpx.Client, subscriber: Subscriber, company: str
) -> None:
    created = _subscribe(bc, subscriber.url("renewed"), _resource(company, "vendors")).json()
    item = f"{ROOT}/subscriptions('{created['subscriptionId']}')"
    assert [s["subscriptionId"] for s in bc.get(f"{ROOT}/subscriptions").json()["value"]] == [created["subscriptionId"]]
    assert bc.get(item).json()["@odata.etag"] == created["@odata.etag"]

    missing = bc.patch(item, json={})
    assert missing.status_code == 428 and _error(missing)["code"] == "BadRequest_InvalidToken"
    handshakes = len(subscriber.handshakes)
    admin.put("/clock", json={"advance_seconds": 3600}).raise_for_status()
    renewed = bc.patch(item, json={"clientState": "new state"}, headers={"If-Match": created["@odata.etag"]})
    assert renewed.status_code == 200, renewed.text
    body = renewed.json()
    assert len(subscriber.handshakes) == handshakes + 1, "renewing runs the handshake again"
    assert body["expirationDateTime"] > created["expirationDateTime"]
    assert body["clientState"] == "new state" and body["@odata.etag"] != created["@odata.etag"]
    assert renewed.headers["ETag"] == body["@odata.etag"]

    stale = bc.patch(item, json={}, headers={"If-Match": created["@odata.etag"]})
    # BC's answer to a stale ETag (the reference's "Concurrency": 409 Request_EntityChanged).
    assert stale.status_code == 409 and _error(stale)["code"] == "Request_EntityChanged"
    assert bc.delete(item, headers={"If-Match": created["@odata.etag"]}).status_code == 409
    assert bc.delete(item).status_code == 428
    assert bc.delete(item, headers={"If-Match": body["@odata.etag"]}).status_code == 204
    gone = bc.get(item)
    assert gone.status_code == 404 and _error(gone)["code"] == "BadRequest_NotFound"
    assert bc.get(f"{ROOT}/subscriptions").json()["value"] == []


def test_a_failing_handshake_on_renewal_keeps_the_subscription_as_it_was(
    bc: httpx.Client, subscriber: Subscriber, company: str
) -> None:
    behaviour = Behaviour()
    created = _subscribe(bc, subscriber.url("renewal-fails", behaviour), _resource(company, "customers")).json()
    behaviour.handshake_status = 503
    item = f"{ROOT}/subscriptions('{created['subscriptionId']}')"
    refused = bc.patch(item, json={}, headers={"If-Match": created["@odata.etag"]})
    assert refused.status_code == 400 and "answered 503" in _error(refused)["message"]
    assert bc.get(item).json()["expirationDateTime"] == created["expirationDateTime"]


def test_subscriptions_expire_after_three_days_of_the_sandbox_clock(
    bc: httpx.Client, admin: httpx.Client, subscriber: Subscriber, company: str
) -> None:
    created = _subscribe(bc, subscriber.url("expiring"), _resource(company, "salesInvoices")).json()
    item = f"{ROOT}/subscriptions('{created['subscriptionId']}')"
    admin.put("/clock", json={"advance_seconds": THREE_DAYS - 60}).raise_for_status()
    almost = bc.get(item)
    assert almost.status_code == 200
    # BC's Date is the sandbox clock's: a client judging expiry on it sees a minute left.
    left = dt.datetime.fromisoformat(created["expirationDateTime"]) - parsedate_to_datetime(almost.headers["date"])
    assert dt.timedelta(seconds=0) < left <= dt.timedelta(seconds=61)
    admin.put("/clock", json={"advance_seconds": 61}).raise_for_status()
    assert bc.get(item).status_code == 404
    assert bc.get(f"{ROOT}/subscriptions").json()["value"] == []
    assert admin.get("/webhooks/subscriptions").json()["subscriptions"] == []
    # Changes after expiry notify nobody.
    customer = bc.get(f"{ROOT}/companies({company})/customers?$top=1").json()["value"][0]["number"]
    posted = admin.post(
        f"/companies/{company}/sales-invoices",
        json={"customer_number": customer, "amount_including_tax": "10.00", "due_date": str(BUSINESS_DATE)},
    )
    assert posted.json()["queued_notices"] == 0


def test_the_limit_of_200_counts_other_apps(
    bc: httpx.Client, admin: httpx.Client, subscriber: Subscriber, company: str
) -> None:
    other = f"/tenants/{SAMPLE}/environments/Production/other-subscriptions"
    admin.put(other, json={"count": 198}).raise_for_status()
    try:
        url = subscriber.url("limited")
        assert _subscribe(bc, url, _resource(company, "customers")).status_code == 201
        assert _subscribe(bc, url, _resource(company, "vendors")).status_code == 201
        refused = _subscribe(bc, url, _resource(company, "accounts"))
        assert refused.status_code == 400
        error = _error(refused)
        assert error["code"] == "BadRequest_SubscriptionLimitReached" and "200" in error["message"]
    finally:
        admin.put(other, json={"count": 0}).raise_for_status()


def _first_open_customer(bc: httpx.Client, company: str) -> str:
    customers = bc.get(f"{ROOT}/companies({company})/customers?$filter=blocked eq ' '").json()["value"]
    number: str = customers[0]["number"]
    return number


def test_changes_within_the_delay_arrive_in_one_post(
    bc: httpx.Client, admin: httpx.Client, subscriber: Subscriber, company: str
) -> None:
    url = subscriber.url("batched")
    invoices = _subscribe(bc, url, _resource(company, "salesInvoices")).json()
    entries = _subscribe(bc, url, _resource(company, "generalLedgerEntries"), "ledger").json()
    customer = _first_open_customer(bc, company)
    posted = [
        admin.post(
            f"/companies/{company}/sales-invoices",
            json={"customer_number": customer, "amount_including_tax": f"{100 + n}.00", "due_date": str(BUSINESS_DATE)},
        ).json()
        for n in range(3)
    ]
    [received] = subscriber.wait_for("batched", 1)
    time.sleep(DELAY_SECONDS * 2)
    assert len(subscriber.received("batched")) == 1, "one POST for the whole wait"
    by_subscription: dict[str, list[dict[str, Any]]] = {}
    for notice in received.body["value"]:
        by_subscription.setdefault(notice["subscriptionId"], []).append(notice)
    invoice_notices = by_subscription[invoices["subscriptionId"]]
    assert {n["resource"] for n in invoice_notices} == {
        f"api/v2.0/companies({company})/salesInvoices({p['document']['id']})" for p in posted
    }
    assert {n["changeType"] for n in invoice_notices} == {"created"}
    assert {n["clientState"] for n in invoice_notices} == {"s3cret"}
    assert invoice_notices[0]["expirationDateTime"] == invoices["expirationDateTime"]
    ledger_notices = by_subscription[entries["subscriptionId"]]
    assert len(ledger_notices) == sum(
        1 for p in posted for c in p["changes"] if c["entity_set"] == "generalLedgerEntries"
    )
    assert {n["clientState"] for n in ledger_notices} == {"ledger"}
    # The notice's resource is a real record.
    record = bc.get(f"/v2.0/{SAMPLE}/Production/{invoice_notices[0]['resource']}")
    assert record.status_code == 200 and record.json()["status"] == "Open"


def test_more_changes_than_the_threshold_arrive_as_one_collection_notice(
    bc: httpx.Client, admin: httpx.Client, subscriber: Subscriber, company: str
) -> None:
    entries = _subscribe(bc, subscriber.url("collection"), _resource(company, "generalLedgerEntries")).json()
    before = bc.get(f"{ROOT}/companies({company})/generalLedgerEntries").json()["value"]
    transfers = COLLECTION_THRESHOLD  # two G/L entries each: twice the threshold
    admin.post(f"/companies/{company}/bank-transfers", json={"count": transfers, "amount": "2.00"}).raise_for_status()
    [received] = subscriber.wait_for("collection", 1)
    [notice] = received.body["value"]
    assert notice["changeType"] == "collection" and notice["subscriptionId"] == entries["subscriptionId"]
    assert notice["resource"].startswith(
        f"api/v2.0/companies({company})/generalLedgerEntries?$filter=lastModifiedDateTime%20gt%20"
    )
    changed = bc.get(f"/v2.0/{SAMPLE}/Production/{notice['resource']}").json()["value"]
    assert len(changed) == 2 * transfers
    after = bc.get(f"{ROOT}/companies({company})/generalLedgerEntries").json()["value"]
    assert len(after) == len(before) + 2 * transfers


def test_a_503_is_retried_until_the_subscriber_takes_it(
    bc: httpx.Client, admin: httpx.Client, subscriber: Subscriber, company: str
) -> None:
    url = subscriber.url("retried", Behaviour(notification_statuses=[503, 503]))
    _subscribe(bc, url, _resource(company, "purchaseInvoices"))
    vendor = bc.get(f"{ROOT}/companies({company})/vendors?$top=1").json()["value"][0]["number"]
    admin.post(
        f"/companies/{company}/purchase-invoices",
        json={"vendor_number": vendor, "amount_including_tax": "80.00", "due_date": str(BUSINESS_DATE)},
    ).raise_for_status()
    received = subscriber.wait_for("retried", 3)
    assert [r.status for r in received] == [503, 503, 200]
    assert received[0].body == received[2].body
    log = _wait_for_log(admin, lambda log: any(a["outcome"] == "delivered" and a["url"] == url for a in log))
    assert [a["outcome"] for a in log if a["url"] == url] == ["retry", "retry", "delivered"]
    assert [a["status"] for a in log if a["url"] == url] == [503, 503, 200]


@pytest.mark.parametrize("status", [410, 400])
def test_a_final_failure_deletes_the_subscription(
    bc: httpx.Client, admin: httpx.Client, subscriber: Subscriber, company: str, status: int
) -> None:
    url = subscriber.url(f"gone-{status}", Behaviour(notification_statuses=[status]))
    created = _subscribe(bc, url, _resource(company, "generalLedgerEntries")).json()
    admin.post(f"/companies/{company}/bank-transfers", json={"count": 1}).raise_for_status()
    subscriber.wait_for(f"gone-{status}", 1)
    _wait_for_log(admin, lambda log: any(a["url"] == url and a["outcome"] == "subscriptions_deleted" for a in log))
    assert bc.get(f"{ROOT}/subscriptions('{created['subscriptionId']}')").status_code == 404


def _money(value: Any) -> Decimal:
    return Decimal(str(value))


def _cash(bc: httpx.Client, company: str) -> Decimal:
    accounts = bc.get(
        f"{ROOT}/companies({company})/accounts?$filter=subCategory eq 'Cash' and accountType eq 'Posting'"
    ).json()["value"]
    return sum((_money(a["netChange"]) for a in accounts), Decimal(0))


def _receivables(bc: httpx.Client, company: str) -> Decimal:
    [account] = bc.get(f"{ROOT}/companies({company})/accounts?$filter=subCategory eq 'Accounts Receivable'").json()[
        "value"
    ]
    return _money(account["netChange"])


def _open_remaining(bc: httpx.Client, company: str) -> Decimal:
    # A corrective invoice stays Corrective, paid or not: its remaining amount says which.
    owed = "status eq 'Open' or status eq 'Corrective'"
    invoices = bc.get(f"{ROOT}/companies({company})/salesInvoices?$filter={owed}").json()["value"]
    return sum((_money(i["remainingAmount"]) for i in invoices), Decimal(0))


def _trial_balance_sum(bc: httpx.Client, company: str) -> Decimal:
    rows = bc.get(f"{ROOT}/companies({company})/trialBalances").json()["value"]

    def amount(text: str) -> Decimal:
        return Decimal(text.replace(",", "") or "0")

    return sum(
        (
            amount(r["balanceAtDateDebit"]) - amount(r["balanceAtDateCredit"])
            for r in rows
            if r["accountType"] == "Posting"
        ),
        Decimal(0),
    )


def test_a_posted_invoice_and_its_payment_change_the_api_figures_consistently(
    bc: httpx.Client, admin: httpx.Client, company: str
) -> None:
    customer = _first_open_customer(bc, company)
    balance_before = bc.get(f"{ROOT}/companies({company})/customers?$filter=number eq '{customer}'").json()["value"][0][
        "balanceDue"
    ]
    cash_before, receivables_before = _cash(bc, company), _receivables(bc, company)
    posted = admin.post(
        f"/companies/{company}/sales-invoices",
        json={"customer_number": customer, "amount_including_tax": "1000.00", "due_date": str(BUSINESS_DATE)},
    )
    assert posted.status_code == 201, posted.text
    invoice = posted.json()["document"]
    assert _receivables(bc, company) == receivables_before + Decimal("1000.00")
    assert _receivables(bc, company) == _open_remaining(bc, company)
    customer_after = bc.get(f"{ROOT}/companies({company})/customers?$filter=number eq '{customer}'").json()["value"][0]
    assert _money(customer_after["balanceDue"]) == _money(balance_before) + Decimal("1000.00")

    admin.post(
        f"/companies/{company}/customer-payments", json={"invoice": invoice["number"], "amount": "400.00"}
    ).raise_for_status()
    record = bc.get(f"{ROOT}/companies({company})/salesInvoices({invoice['id']})").json()
    assert _money(record["remainingAmount"]) == Decimal("600.00") and record["status"] == "Open"
    paid = admin.post(f"/companies/{company}/customer-payments", json={"invoice": invoice["id"], "amount": "600.00"})
    assert paid.json()["document"]["status"] == "Paid"
    record = bc.get(f"{ROOT}/companies({company})/salesInvoices({invoice['id']})").json()
    assert _money(record["remainingAmount"]) == 0 and record["status"] == "Paid"
    assert _cash(bc, company) == cash_before + Decimal("1000.00")
    assert _receivables(bc, company) == receivables_before
    assert _receivables(bc, company) == _open_remaining(bc, company)
    assert _trial_balance_sum(bc, company) == 0
    over = admin.post(f"/companies/{company}/customer-payments", json={"invoice": invoice["id"], "amount": "1.00"})
    assert over.status_code == 422
    # The cue services read the same changed book.
    name = bc.get(f"{ROOT}/companies({company})").json()["name"]
    cues = bc.get(f"/v2.0/{SAMPLE}/Production/ODataV4/Company('{name}')/AccountantPortalFinanceCues").json()
    assert _money(cues["value"][0]["CashAccountsBalanceAmountDecimal"]) == _cash(bc, company)


def test_a_posted_credit_memo_is_served_as_bc_serves_it_and_lowers_sales(
    bc: httpx.Client, admin: httpx.Client, company: str
) -> None:
    customer = _first_open_customer(bc, company)
    cash_before, receivables_before = _cash(bc, company), _receivables(bc, company)
    this_month = (
        f"{ROOT}/companies({company})/salesCreditMemos?$filter=postingDate ge {BUSINESS_DATE.replace(day=1)}"
        f" and postingDate le {BUSINESS_DATE}&$select=number,status,postingDate,totalAmountExcludingTax,currencyCode"
    )
    before = bc.get(this_month)
    assert before.status_code == 200, before.text
    month_sales = (
        f"{ROOT}/companies({company})/customerSales?$filter=dateFilter_FilterOnly ge {BUSINESS_DATE.replace(day=1)}"
        f" and dateFilter_FilterOnly le {BUSINESS_DATE}&$select=customerNumber,totalSalesAmount"
    )

    def sales_of_month() -> dict[str, Decimal]:
        rows = bc.get(month_sales).raise_for_status().json()["value"]
        return {row["customerNumber"]: _money(row["totalSalesAmount"]) for row in rows}

    sales_before = sales_of_month()

    posted = admin.post(
        f"/companies/{company}/sales-credit-memos", json={"customer_number": customer, "amount_including_tax": "360.00"}
    )
    assert posted.status_code == 201, posted.text
    memo = posted.json()["document"]
    after = bc.get(this_month).json()["value"]
    assert len(after) == len(before.json()["value"]) + 1
    [record] = [r for r in after if r["number"] == memo["number"]]
    assert set(record) == {"@odata.etag", "number", "status", "postingDate", "totalAmountExcludingTax", "currencyCode"}
    assert record["status"] == "Paid" and record["postingDate"] == str(BUSINESS_DATE) and record["currencyCode"] == ""
    whole = bc.get(f"{ROOT}/companies({company})/salesCreditMemos({memo['id']})").json()
    assert whole["customerNumber"] == customer and _money(whole["totalAmountIncludingTax"]) == Decimal("360.00")
    assert _money(whole["totalAmountExcludingTax"]) + _money(whole["totalTaxAmount"]) == Decimal("360.00")
    # The customerSales query sums the ledger's invoices less its credit memos per customer:
    # the month's sales of that customer fall by the memo's amount excluding tax.
    sales_after = sales_of_month()
    assert sales_after[customer] == sales_before[customer] - _money(whole["totalAmountExcludingTax"])
    assert {n: a for n, a in sales_after.items() if n != customer} == {
        n: a for n, a in sales_before.items() if n != customer
    }
    # Before the month began: nothing of this month's postings.
    earlier = bc.get(
        f"{ROOT}/companies({company})/customerSales?$filter=dateFilter_FilterOnly lt {BUSINESS_DATE.replace(day=1)}"
    ).json()["value"]
    all_time = bc.get(f"{ROOT}/companies({company})/customerSales").json()["value"]
    assert all(row["dateFilter_FilterOnly"] is None for row in earlier + all_time)  # a parameter, not a value
    assert {r["customerNumber"] for r in all_time} == {r["customerNumber"] for r in earlier} >= set(sales_after)
    for row in all_time:
        number = row["customerNumber"]
        [before_month] = [_money(r["totalSalesAmount"]) for r in earlier if r["customerNumber"] == number]
        assert _money(row["totalSalesAmount"]) == before_month + sales_after[number]
    # Refunded from the bank: cash falls, receivables stay, the books still balance.
    assert _cash(bc, company) == cash_before - Decimal("360.00")
    assert _receivables(bc, company) == receivables_before
    assert _trial_balance_sum(bc, company) == 0
    bad = bc.get(f"{ROOT}/companies({company})/salesCreditMemos?$filter=status eq 'Refunded'")
    assert bad.status_code == 400
    unknown = admin.post(
        f"/companies/{company}/sales-credit-memos", json={"customer_number": "C99999", "amount_including_tax": "1.00"}
    )
    assert unknown.status_code == 422


def test_webhook_supported_resources_are_discoverable(bc: httpx.Client, company: str) -> None:
    runtime = f"/v2.0/{SAMPLE}/Production/api/microsoft/runtime/beta/companies({company})/webhookSupportedResources"
    resources = [r["resource"] for r in bc.get(runtime, params={"$filter": "resource eq 'v2.0*'"}).json()["value"]]
    assert "v2.0/salesInvoices" in resources and "v2.0/generalLedgerEntries" in resources
    assert "v2.0/trialBalances" not in resources
    exact = bc.get(runtime, params={"$filter": "resource eq 'v2.0/customers'"}).json()["value"]
    assert [r["resource"] for r in exact] == ["v2.0/customers"]
    assert bc.get(runtime.replace(company, "00000000-0000-0000-0000-000000000001")).status_code == 404


def test_the_sandbox_stops_promptly_while_a_notification_is_under_way(tmp_path: Path, subscriber: Subscriber) -> None:
    settings = sandbox_settings(tmp_path, sandbox_webhook_delay_seconds=0.1, sandbox_webhook_timeout_seconds=10.0)
    url = subscriber.url("slow", Behaviour(notification_delay_seconds=8))
    with (
        serve_in_background(settings) as running,
        httpx.Client(base_url=running.base_url, verify=running.ssl_context(), timeout=15) as http,
    ):
        token = msal_app(running, str(SAMPLE), http).acquire_token_for_client(scopes=[BC_SCOPE])["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        company = http.get(f"{ROOT}/companies").json()["value"][0]["id"]
        assert _subscribe(http, url, _resource(company, "generalLedgerEntries")).status_code == 201
        http.post(f"/_sandbox/companies/{company}/bank-transfers", json={"count": 1}).raise_for_status()
        subscriber.wait_for("slow", 1)
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 5, "the delivery task is cancelled with the app's lifespan"


def test_limits_and_faults_apply_to_subscriptions_as_to_every_bc_route(
    bc: httpx.Client, admin: httpx.Client, subscriber: Subscriber, company: str
) -> None:
    faults = f"/tenants/{SAMPLE}/faults"
    admin.put(faults, json={"kind": "too_many_requests", "count": 1}).raise_for_status()
    throttled = _subscribe(bc, subscriber.url("faulted"), _resource(company, "customers"))
    assert throttled.status_code == 429 and _error(throttled)["code"] == "Application_TooManyRequests"
    admin.put(faults, json={"kind": "malformed_body", "count": 1}).raise_for_status()
    malformed = bc.get(f"{ROOT}/subscriptions")
    assert malformed.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        malformed.json()
    assert bc.get(f"{ROOT}/subscriptions", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert bc.put(f"{ROOT}/subscriptions", json={}).status_code == 405
