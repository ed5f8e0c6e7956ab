"""What the fetcher makes of Business Central's answers: blank dates, exact amounts,
hostile bodies, Retry-After and $batch sub-responses.

The sandbox only answers as BC does, so the answers here are crafted: an
httpx.MockTransport plays BC for the fetcher's own HTTP client, byte for byte.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from hub_common.events import ClientConnection, FailureKind
from hub_fetcher.bc.client import BatchRequest, BusinessCentral, Environment
from hub_fetcher.bc.entities import Company, PurchaseInvoice, SalesInvoice, parse_entities
from hub_fetcher.bc.failures import FetchFailure
from hub_fetcher.bc.identity import TokenProvider
from hub_fetcher.bc.limits import TenantLimiter
from hub_fetcher.figures.company import CompanyRecords, company_figures
from hub_fetcher.refresh import ClientReader, company_requests
from hub_fetcher.statements import _aged, _trial_balance

BC_HOST = "https://bc.test"
ENVIRONMENT = Environment(tenant="contoso.com", name="Production")
ROOT = f"{BC_HOST}/v2.0/contoso.com/Production/api/v2.0"
TODAY = dt.date(2026, 11, 18)
READ_AT = dt.datetime(2026, 11, 18, 9, 30, tzinfo=dt.UTC)
BLANK_DATE = "0001-01-01"

# What BC answers to a request: (status, headers, body bytes).
Answering = Callable[[httpx.Request], tuple[int, dict[str, str], bytes]]


class FixedToken(TokenProvider):
    """The identity is not under test here: a fixed bearer token instead of Entra."""

    def __init__(self) -> None:
        pass

    async def token_for(self, tenant: str) -> str:
        return "token"


class CraftedBusinessCentral:
    """Plays BC: each request is answered by ``answering``, set by the test."""

    def __init__(self) -> None:
        self.answering: Answering = lambda request: (200, {}, b'{"value": []}')

    def handle(self, request: httpx.Request) -> httpx.Response:
        status, headers, body = self.answering(request)
        # A stream, as from the network: the client reads the raw bytes and inflates them itself.
        return httpx.Response(
            status, headers={"content-type": "application/json", **headers}, stream=httpx.ByteStream(body)
        )


@pytest.fixture
def crafted() -> CraftedBusinessCentral:
    return CraftedBusinessCentral()


@pytest.fixture
async def bc(crafted: CraftedBusinessCentral) -> AsyncIterator[BusinessCentral]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(crafted.handle)) as http:
        yield BusinessCentral(
            api_base=BC_HOST,
            http=http,
            tokens=FixedToken(),
            limiter=TenantLimiter(),
            max_response_bytes=10_000_000,
            request_deadline_seconds=5,
        )


def always(status: int, body: bytes, headers: dict[str, str] | None = None) -> Answering:
    return lambda request: (status, headers or {}, body)


def batch_answer(*responses: dict[str, Any]) -> Answering:
    """A $batch answer; its sub-responses are written as given (raw JSON text in bodies kept)."""
    return always(200, json.dumps({"responses": list(responses)}).encode())


def batch_answer_text(text: str) -> Answering:
    return always(200, text.encode())


# ---------------------------------------------------------------- 1. blank dates


def test_a_blank_date_is_no_date() -> None:
    amounts = {"remainingAmount": 1, "totalAmountIncludingTax": 1}
    sale = SalesInvoice.model_validate({"number": "S1", "status": "Open", "dueDate": BLANK_DATE, **amounts})
    purchase = PurchaseInvoice.model_validate({"number": "P1", "status": "Open", "dueDate": BLANK_DATE, **amounts})
    assert (sale.due_date, purchase.due_date) == (None, None)


def test_a_real_date_is_kept() -> None:
    amounts = {"remainingAmount": 1, "totalAmountIncludingTax": 1}
    sale = SalesInvoice.model_validate({"number": "S1", "status": "Open", "dueDate": "2026-11-17", **amounts})
    assert sale.due_date == dt.date(2026, 11, 17)


def test_an_invoice_with_a_blank_due_date_is_never_due() -> None:
    records = CompanyRecords.parse(
        {
            "setup": [{"localCurrencyCode": "EUR"}],
            "accounts": [],
            "open_sales_invoices": [
                {
                    "number": "S1",
                    "status": "Open",
                    "dueDate": BLANK_DATE,
                    "remainingAmount": 100,
                    "totalAmountIncludingTax": 100,
                }
            ],
            "open_purchase_invoices": [
                {"number": "P1", "status": "Open", "dueDate": BLANK_DATE, "totalAmountIncludingTax": 40}
            ],
            "unposted_sales_invoices": [],
            "customer_sales_this_month": [{"customerNumber": "C1", "totalSalesAmount": 0}],
            "sales_orders": [],
            "sales_quotes": [],
        }
    )
    figures = company_figures(records, today=TODAY, read_at=READ_AT, document_link=lambda page, number: "")
    assert figures.overdue_sales_invoices is not None and figures.overdue_purchase_invoices is not None
    assert (figures.overdue_sales_invoices.count, figures.overdue_sales_invoices.total) == (0, Decimal(0))
    assert figures.overdue_sales_invoices.largest == []
    assert (figures.overdue_purchase_invoices.count, figures.overdue_purchase_invoices.total) == (0, Decimal(0))
    assert figures.purchase_invoices_due_next_week is not None
    assert figures.purchase_invoices_due_next_week.count == 0
    assert figures.sales_this_month is not None and figures.sales_this_month.amount == Decimal(0)
    assert figures.cash_flow_forecast is not None
    first_week = figures.cash_flow_forecast.weeks[0]
    assert (first_week.receipts, first_week.payments) == (Decimal(0), Decimal(0))


# ---------------------------------------------------------------- 2. exact amounts


async def test_amounts_of_seventeen_digits_keep_their_cents(
    bc: BusinessCentral, crafted: CraftedBusinessCentral
) -> None:
    crafted.answering = always(
        200,
        b'{"value": [{"number": "S1", "status": "Open", "dueDate": null, "remainingAmount": 329882455933742.36, "totalAmountIncludingTax": 329882455933742.36}]}',
    )
    items = await bc.get_collection(ENVIRONMENT, f"{ROOT}/companies(1)/salesInvoices")
    [sale] = parse_entities(SalesInvoice, items, "salesInvoices")
    assert sale.remaining_amount == Decimal("329882455933742.36")


async def test_amounts_in_a_batch_keep_their_cents(bc: BusinessCentral, crafted: CraftedBusinessCentral) -> None:
    crafted.answering = batch_answer_text(
        '{"responses": [{"id": "sales", "status": 200, "body": '
        '{"value": [{"number": "S1", "status": "Open", "dueDate": null, "remainingAmount": 329882455933742.36, "totalAmountIncludingTax": 329882455933742.36}]}}]}'
    )
    collections = await bc.batch_collections(ENVIRONMENT, [BatchRequest("sales", "companies(1)/salesInvoices")])
    [sale] = parse_entities(SalesInvoice, collections["sales"], "salesInvoices")
    assert sale.remaining_amount == Decimal("329882455933742.36")


async def test_a_batch_error_with_numbers_in_its_body_is_still_classified(
    bc: BusinessCentral, crafted: CraftedBusinessCentral
) -> None:
    crafted.answering = batch_answer_text(
        '{"responses": [{"id": "sales", "status": 404, "body": '
        '{"error": {"code": "BadRequest_NotFound", "message": "gone", "detail": 1.5}}}]}'
    )
    with pytest.raises(FetchFailure) as failure:
        await bc.batch_collections(ENVIRONMENT, [BatchRequest("sales", "companies(1)/salesInvoices")])
    assert (failure.value.kind, failure.value.bc_error_code) == (FailureKind.NO_COMPANY_ACCESS, "BadRequest_NotFound")


def test_a_trial_balance_amount_sent_as_a_number_is_read() -> None:
    # Trial balance amounts are text in BC's docs; should a version send a number, the
    # client now hands it over as a Decimal.
    balance = _trial_balance([{"number": "1000", "totalDebit": Decimal("72893.84")}], TODAY, TODAY)
    assert balance.lines[0].net_change_debit == Decimal("72893.84")


def test_a_trial_balance_in_three_decimals_is_read_as_bc_wrote_it() -> None:
    """BC formats every trial balance amount with the company's amount decimal places: a
    company keeping three (KWD) writes "12.345" for twelve dinars 345 fils, not 12,345."""
    rows = [
        {"number": "1000", "totalDebit": "", "totalCredit": "", "balanceAtDateDebit": "", "balanceAtDateCredit": ""},
        {
            "number": "1010",
            "totalDebit": "12.345",
            "totalCredit": "0.000",
            "balanceAtDateDebit": "1,234.567",
            "balanceAtDateCredit": "0.000",
        },
    ]
    line = _trial_balance(rows, TODAY, TODAY).lines[1]
    assert (line.net_change_debit, line.net_change_credit, line.balance_debit) == (
        Decimal("12.345"),
        Decimal("0.000"),
        Decimal("1234.567"),
    )
    # A company without decimals (its zeros are "0") groups thousands with the same mark.
    whole = [{"number": "1010", "totalDebit": "12,345", "totalCredit": "0"}]
    assert _trial_balance(whole, TODAY, TODAY).lines[0].net_change_debit == Decimal("12345")


def test_a_trial_balance_amount_beyond_28_digits_is_a_bad_response() -> None:
    with pytest.raises(FetchFailure) as failure:
        _trial_balance([{"number": "1010", "totalDebit": "1" * 29 + ".00"}], TODAY, TODAY)
    assert failure.value.kind is FailureKind.BAD_RESPONSE


def _aged_row(number: int, balance: object) -> dict[str, object]:
    return {
        "customerId": str(uuid.UUID(int=number + 1)),
        "customerNumber": f"C{number}",
        "name": f"Customer {number}",
        "currencyCode": "",
        "balanceDue": balance,
        "currentAmount": balance,
        "period1Amount": 0,
        "period2Amount": 0,
        "period3Amount": 0,
    }


def test_aged_receivables_keep_the_customers_with_amounts_however_many_are_settled() -> None:
    """BC answers a row for every customer, settled ones too: 25,000 of them are no reason
    to refuse the report."""
    total = {**_aged_row(0, Decimal("30.50")), "customerId": str(uuid.UUID(int=0)), "name": "Total"}
    rows = [_aged_row(n, 0) for n in range(1, 25_001)] + [_aged_row(30_001, Decimal("10.25")), _aged_row(30_002, 20)]
    report = _aged([*rows, total], "agedAccountsReceivables", TODAY)
    assert [(line.number, line.balance_due) for line in report.lines] == [("C30001", Decimal("10.25")), ("C30002", 20)]
    # More parties with amounts than a workbook prints, or a row without its amounts, is a bad response.
    for answer in ([_aged_row(n, 1) for n in range(1, 20_002)], [{**_aged_row(1, 0), "balanceDue": None}]):
        with pytest.raises(FetchFailure) as failure:
            _aged(answer, "agedAccountsReceivables", TODAY)
        assert failure.value.kind is FailureKind.BAD_RESPONSE


# ---------------------------------------------------------------- 3. hostile bodies


HOSTILE_BODIES = {
    "nested too deeply": b"[" * 200_000,
    "an integer beyond Python's digit limit": b'{"value": [{"netChange": ' + b"1" * 5000 + b"}]}",
}


@pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
async def test_a_hostile_answer_is_a_bad_response(
    bc: BusinessCentral, crafted: CraftedBusinessCentral, body: bytes
) -> None:
    crafted.answering = always(200, body)
    with pytest.raises(FetchFailure) as failure:
        await bc.get_collection(ENVIRONMENT, f"{ROOT}/companies(1)/accounts")
    assert failure.value.kind is FailureKind.BAD_RESPONSE


@pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
async def test_a_hostile_error_body_still_gives_the_failure_of_its_status(
    bc: BusinessCentral, crafted: CraftedBusinessCentral, body: bytes
) -> None:
    crafted.answering = always(503, body)
    with pytest.raises(FetchFailure) as failure:
        await bc.get_collection(ENVIRONMENT, f"{ROOT}/companies(1)/accounts")
    assert (failure.value.kind, failure.value.http_status) == (FailureKind.ENVIRONMENT_OFFLINE, 503)


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        # The admin center's shape, which a proxy or gateway in front of BC may send too.
        (
            b'{"code": "EnvironmentNotFound", "message": "Environment does not exist."}',
            "EnvironmentNotFound",
            "Environment does not exist.",
        ),
        (
            b'{"error": {"code": "BadRequest_NotFound", "message": "No HTTP resource"}}',
            "BadRequest_NotFound",
            "No HTTP resource",
        ),
        # JSON, but neither shape: the body itself says what came.
        (b'{"status": "gone"}', None, '{"status": "gone"}'),
    ],
)
async def test_an_error_answer_keeps_its_code_and_message_in_either_shape(
    bc: BusinessCentral, crafted: CraftedBusinessCentral, body: bytes, code: str | None, message: str
) -> None:
    crafted.answering = always(404, body)
    with pytest.raises(FetchFailure) as failure:
        await bc.get_collection(ENVIRONMENT, f"{ROOT}/companies(1)/accounts")
    assert (failure.value.bc_error_code, failure.value.message) == (code, message)


async def test_a_tenants_endless_error_text_is_cut_where_it_enters(
    bc: BusinessCentral, crafted: CraftedBusinessCentral
) -> None:
    message = "x" * 5_000_000
    body = json.dumps({"error": {"code": "Internal_" + "y" * 1000, "message": message}}).encode()
    crafted.answering = always(500, body)
    with pytest.raises(FetchFailure) as failure:
        await bc.get_collection(ENVIRONMENT, f"{ROOT}/companies(1)/accounts")
    # What a retry logs (the exception's text) and what the event keeps are both bounded.
    assert len(failure.value.message or "") == 2000
    assert len(failure.value.bc_error_code or "") == 200
    assert len(str(failure.value)) < 2100


@pytest.mark.parametrize(
    "amount", ["1e30", "-1e30", "100000000000000000000", "1e-40", "0E-99999999999", "0E+999999999"]
)
def test_an_amount_no_snapshot_could_hold_is_refused_at_the_entity(amount: str) -> None:
    items = [
        {
            "number": "S1",
            "status": "Open",
            "dueDate": None,
            "remainingAmount": Decimal(amount),
            "totalAmountIncludingTax": 1,
        }
    ]
    with pytest.raises(FetchFailure) as failure:
        parse_entities(SalesInvoice, items, "salesInvoices")
    assert failure.value.kind is FailureKind.BAD_RESPONSE
    assert "remainingAmount" in (failure.value.message or "")


def test_the_largest_amount_bc_could_sum_is_kept() -> None:
    largest = Decimal("99999999999999999999.99")
    [sale] = parse_entities(
        SalesInvoice,
        [
            {
                "number": "S1",
                "status": "Open",
                "dueDate": None,
                "remainingAmount": -largest,
                "totalAmountIncludingTax": 1,
            }
        ],
        "salesInvoices",
    )
    assert sale.remaining_amount == -largest


async def test_one_companys_huge_amount_ends_as_one_bad_response_for_it(
    bc: BusinessCentral, crafted: CraftedBusinessCentral
) -> None:
    company_id = uuid.uuid4()
    ids = [request.id for request in company_requests(company_id, TODAY)]
    bodies: dict[str, str] = dict.fromkeys(ids, '{"value": []}')
    bodies["setup"] = '{"localCurrencyCode": "EUR"}'
    bodies["open_sales_invoices"] = (
        '{"value": [{"number": "S1", "status": "Open", "dueDate": "2026-11-01", "remainingAmount": 1e30, "totalAmountIncludingTax": 1}]}'
    )
    responses = ", ".join(f'{{"id": "{key}", "status": 200, "body": {body}}}' for key, body in bodies.items())
    crafted.answering = batch_answer_text(f'{{"responses": [{responses}]}}')
    reader = ClientReader(bc, web_client_base="https://businesscentral.test", use_cue_services=False)
    connection = ClientConnection(tenant=ENVIRONMENT.tenant, environment=ENVIRONMENT.name)
    company = Company.model_validate({"id": str(company_id), "name": "CRONUS"})
    with pytest.raises(FetchFailure) as failure:
        await reader.snapshot(connection, company, client_id=uuid.uuid4(), refresh_id=uuid.uuid4(), today=TODAY)
    assert failure.value.kind is FailureKind.BAD_RESPONSE


# ---------------------------------------------------------------- 4. Retry-After

# Both forms of the header, one by one: tests/unit/test_failures.py.


async def test_a_throttled_answer_with_an_http_date_says_when_to_retry(
    bc: BusinessCentral, crafted: CraftedBusinessCentral
) -> None:
    in_a_minute = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    crafted.answering = always(503, b"", {"Retry-After": in_a_minute})
    with pytest.raises(FetchFailure) as failure:
        await bc.get_collection(ENVIRONMENT, f"{ROOT}/companies(1)/accounts")
    assert failure.value.retry_after_seconds is not None
    assert 50 <= failure.value.retry_after_seconds <= 60


# ---------------------------------------------------------------- 5. $batch sub-responses

SETUP = BatchRequest("setup", "companies(1)/generalLedgerSetup")


@pytest.mark.parametrize(
    "sub_response",
    [
        {"id": "setup", "status": 200},
        {"id": "setup", "status": 204},
        {"id": "setup", "status": 200, "body": None},
        {"id": "setup", "status": 200, "body": [{"localCurrencyCode": "EUR"}]},
        {"id": "setup", "status": 200, "body": "EUR"},
        {"id": "setup", "status": 302, "body": {"localCurrencyCode": "EUR"}},
    ],
)
async def test_a_success_without_an_object_body_is_a_bad_response(
    bc: BusinessCentral, crafted: CraftedBusinessCentral, sub_response: dict[str, Any]
) -> None:
    crafted.answering = batch_answer(sub_response)
    with pytest.raises(FetchFailure) as failure:
        await bc.batch_collections(ENVIRONMENT, [SETUP])
    assert failure.value.kind is FailureKind.BAD_RESPONSE


async def test_a_setup_is_read_as_the_collection_bc_answers(
    bc: BusinessCentral, crafted: CraftedBusinessCentral
) -> None:
    """BC answers generalLedgerSetup as every entity set, a collection of one; an entity
    without the collection is no answer (it would count as a record of every field's default)."""
    crafted.answering = batch_answer({"id": "setup", "status": 200, "body": {"value": [{"localCurrencyCode": "EUR"}]}})
    assert await bc.batch_collections(ENVIRONMENT, [SETUP]) == {"setup": [{"localCurrencyCode": "EUR"}]}
    crafted.answering = batch_answer({"id": "setup", "status": 200, "body": {"localCurrencyCode": "EUR"}})
    with pytest.raises(FetchFailure) as failure:
        await bc.batch_collections(ENVIRONMENT, [SETUP])
    assert failure.value.kind is FailureKind.BAD_RESPONSE


async def test_an_error_without_a_body_is_still_classified(
    bc: BusinessCentral, crafted: CraftedBusinessCentral
) -> None:
    crafted.answering = batch_answer({"id": "setup", "status": 404})
    with pytest.raises(FetchFailure) as failure:
        await bc.batch_collections(ENVIRONMENT, [SETUP])
    assert failure.value.kind is FailureKind.NO_COMPANY_ACCESS


async def test_an_optional_read_without_a_body_is_its_own_failure(
    bc: BusinessCentral, crafted: CraftedBusinessCentral
) -> None:
    rates = BatchRequest("rates", "companies(1)/currencyExchangeRates", optional=True)
    crafted.answering = batch_answer(
        {"id": "setup", "status": 200, "body": {"value": [{"localCurrencyCode": "EUR"}]}},
        {"id": "rates", "status": 200},
    )
    read = await bc.read_batch(ENVIRONMENT, [SETUP, rates])
    assert read.collections == {"setup": [{"localCurrencyCode": "EUR"}]}
    assert read.failures["rates"].kind is FailureKind.BAD_RESPONSE


@pytest.mark.parametrize(
    "responses",
    [
        [
            {"id": "setup", "status": 200, "body": {"localCurrencyCode": "EUR"}},
            {"id": "setup", "status": 200, "body": {"localCurrencyCode": "USD"}},
        ],
        [
            {"id": "setup", "status": 200, "body": {"localCurrencyCode": "EUR"}},
            {"id": "unasked", "status": 200, "body": {"value": []}},
        ],
    ],
    ids=["an id answered twice", "an id never asked"],
)
async def test_a_batch_answer_to_the_wrong_ids_is_a_bad_response(
    bc: BusinessCentral, crafted: CraftedBusinessCentral, responses: list[dict[str, Any]]
) -> None:
    crafted.answering = batch_answer(*responses)
    with pytest.raises(FetchFailure) as failure:
        await bc.batch_collections(ENVIRONMENT, [SETUP])
    assert failure.value.kind is FailureKind.BAD_RESPONSE


# ---------------------------------------------------------------- the token in use


class TokenRenewedWhileWaiting(TokenProvider):
    """The first token lapses while the request waits for a tenant slot; msal then has
    a new one."""

    def __init__(self) -> None:
        self.handed_out = 0

    async def token_for(self, tenant: str) -> str:
        self.handed_out += 1
        return "before the wait" if self.handed_out == 1 else "after the wait"


async def test_the_token_sent_is_the_one_valid_once_the_slot_is_taken(crafted: CraftedBusinessCentral) -> None:
    sent: list[str] = []

    def answering(request: httpx.Request) -> tuple[int, dict[str, str], bytes]:
        sent.append(request.headers["authorization"])
        return 200, {}, b'{"value": []}'

    crafted.answering = answering
    async with httpx.AsyncClient(transport=httpx.MockTransport(crafted.handle)) as http:
        bc = BusinessCentral(
            api_base=BC_HOST,
            http=http,
            tokens=TokenRenewedWhileWaiting(),
            limiter=TenantLimiter(),
            max_response_bytes=10_000,
            request_deadline_seconds=5,
        )
        await bc.get_collection(ENVIRONMENT, f"{ROOT}/companies")
    assert sent == ["Bearer after the wait"]


# ---------------------------------------------------------------- null texts


def test_a_null_text_is_an_empty_one_not_a_bad_answer() -> None:
    [invoice] = parse_entities(
        SalesInvoice,
        [
            {
                "number": "103001",
                "customerName": None,
                "status": "Open",
                "dueDate": "2026-11-01",
                "remainingAmount": 5,
                "totalAmountIncludingTax": 5,
            }
        ],
        "salesInvoices",
    )
    assert invoice.customer_name == ""
    [purchase] = parse_entities(
        PurchaseInvoice,
        [{"number": "1", "vendorName": None, "status": "Open", "dueDate": None, "totalAmountIncludingTax": 1}],
        "purchaseInvoices",
    )
    assert purchase.vendor_name == ""
    # A required text stays required: an invoice without its number is no invoice.
    with pytest.raises(FetchFailure):
        parse_entities(SalesInvoice, [{"number": None, "status": "Open"}], "salesInvoices")


# ---------------------------------------------------------------- compressed answers


def _gzip(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=9)


async def test_a_gzip_answer_is_inflated(bc: BusinessCentral, crafted: CraftedBusinessCentral) -> None:
    crafted.answering = always(200, _gzip(b'{"value": [{"n": 1}]}'), {"content-encoding": "gzip"})
    assert await bc.get_collection(ENVIRONMENT, f"{ROOT}/companies") == [{"n": 1}]


@pytest.mark.parametrize(
    ("encoding", "body", "words"),
    [
        # Gzip inside gzip: 10 MB of JSON inflates from a few kilobytes, layer by layer.
        ("gzip, gzip", _gzip(_gzip(b'{"value": [' + b" " * 10_000_000 + b"]}")), "gzip only"),
        ("br", b"\x0b\x02\x80{}\x03", "gzip only"),
        # One layer past the limit: refused once the limit is passed, not after inflating it all.
        ("gzip", _gzip(b'{"value": [' + b" " * 10_000_000 + b"]}"), "byte limit"),
        ("gzip", b"not gzip at all", "does not inflate"),
    ],
)
async def test_an_answer_that_would_inflate_past_the_limit_or_cannot_is_refused(
    bc: BusinessCentral, crafted: CraftedBusinessCentral, encoding: str, body: bytes, words: str
) -> None:
    crafted.answering = always(200, body, {"content-encoding": encoding})
    with pytest.raises(FetchFailure) as failure:
        await bc.get_collection(ENVIRONMENT, f"{ROOT}/companies")
    assert failure.value.kind is FailureKind.BAD_RESPONSE
    assert words in (failure.value.message or "")


async def test_the_hub_asks_for_gzip_alone(bc: BusinessCentral, crafted: CraftedBusinessCentral) -> None:
    asked: list[str] = []

    def answering(request: httpx.Request) -> tuple[int, dict[str, str], bytes]:
        asked.append(request.headers["accept-encoding"])
        return 200, {}, b'{"value": []}'

    crafted.answering = answering
    await bc.get_collection(ENVIRONMENT, f"{ROOT}/companies")
    assert asked == ["gzip"]


# ---------------------------------------------------------------- answers too many


@pytest.mark.parametrize(
    ("body", "words"),
    [
        # 1.2 MB of "{}": about 30 MB of dictionaries once parsed, and 50 MB of it 1.2 GB.
        (b'{"value": [' + b",".join([b"{}"] * 410_000) + b"]}", "more than 400000 JSON objects"),
        # 1,000,001 amounts: about 110 MB of Decimals from 4 MB of "1.5,".
        (b'{"value": [' + b",".join([b"1.5"] * 1_000_001) + b"]}", "more than 1000000 JSON numbers"),
        # Lists (and strings) the parser cannot count: refused before it starts.
        (b'{"value": [' + b",".join([b"[]"] * 3_000_001) + b"]}", "more than 3000000 JSON values"),
        (b'{"value": [{"remainingAmount": NaN}]}', "NaN is not a JSON value"),
    ],
)
async def test_an_answer_of_endless_small_values_is_refused_before_it_fills_memory(
    bc: BusinessCentral, crafted: CraftedBusinessCentral, body: bytes, words: str
) -> None:
    crafted.answering = always(200, body)
    tracemalloc.start()
    try:
        with pytest.raises(FetchFailure) as failure:
            await bc.get_collection(ENVIRONMENT, f"{ROOT}/salesInvoices")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert failure.value.kind is FailureKind.BAD_RESPONSE
    assert words in (failure.value.message or "")
    assert peak < 150_000_000


async def test_a_collection_past_its_size_across_pages_is_refused(
    bc: BusinessCentral, crafted: CraftedBusinessCentral
) -> None:
    page = b",".join([b'{"n":1}'] * 20_000)
    served: list[str] = []

    def answering(request: httpx.Request) -> tuple[int, dict[str, str], bytes]:
        served.append(str(request.url))
        link = f"{ROOT}/salesInvoices?$skiptoken={len(served)}"
        return 200, {}, b'{"value": [' + page + b'], "@odata.nextLink": "' + link.encode() + b'"}'

    crafted.answering = answering
    with pytest.raises(FetchFailure) as failure:
        await bc.get_collection(ENVIRONMENT, f"{ROOT}/salesInvoices")
    # Every entity is a JSON object: the pages' shared allowance of objects bounds them.
    assert "more than 400000 JSON objects" in (failure.value.message or "")
    assert len(served) == 20  # refused at the page that passed the size, not at the 1,000th


def _pages_of_small_values(served: list[str], pages: int) -> Answering:
    """Pages of one entity holding 300,000 empty strings each (about 2 MB parsed), each
    linking to the next, ``pages`` in all: each page alone is well within one answer's
    limits."""
    entity = b'{"x": [' + b",".join([b'""'] * 300_000) + b"]}"

    def answering(request: httpx.Request) -> tuple[int, dict[str, str], bytes]:
        served.append(str(request.url))
        if len(served) >= pages:
            return 200, {}, b'{"value": [' + entity + b"]}"
        link = f"{ROOT}/companies(1)/salesInvoices?$skiptoken={len(served)}"
        return 200, {}, b'{"value": [' + entity + b'], "@odata.nextLink": "' + link.encode() + b'"}'

    return answering


async def test_pages_of_small_values_share_one_answers_limit(
    bc: BusinessCentral, crafted: CraftedBusinessCentral
) -> None:
    served: list[str] = []
    crafted.answering = _pages_of_small_values(served, pages=20)
    with pytest.raises(FetchFailure) as failure:
        await bc.get_collection(ENVIRONMENT, f"{ROOT}/companies(1)/salesInvoices")
    assert failure.value.kind is FailureKind.BAD_RESPONSE
    assert "more than 3000000 JSON values" in (failure.value.message or "")
    # Refused at the page that passed the limit, not kept in memory page after page.
    assert len(served) == 10


async def test_a_batched_collections_next_pages_share_one_answers_limit(
    bc: BusinessCentral, crafted: CraftedBusinessCentral
) -> None:
    served: list[str] = []
    pages = _pages_of_small_values(served, pages=20)

    def answering(request: httpx.Request) -> tuple[int, dict[str, str], bytes]:
        if request.url.path.endswith("/$batch"):
            _, _, body = pages(request)
            first = json.loads(body)
            return batch_answer({"id": "sales", "status": 200, "headers": {}, "body": first})(request)
        return pages(request)

    crafted.answering = answering
    with pytest.raises(FetchFailure) as failure:
        await bc.read_batch(ENVIRONMENT, [BatchRequest("sales", "companies(1)/salesInvoices")])
    assert "more than 3000000 JSON values" in (failure.value.message or "")
    assert len(served) == 11  # the $batch's answer (its own allowance) and ten next pages


# ---------------------------------------------------------------- throttling


async def test_a_429_holds_every_read_of_the_tenant_back_for_its_retry_after(crafted: CraftedBusinessCentral) -> None:
    answers = iter(
        [
            (429, {"retry-after": "1"}, b'{"error": {"code": "Application_TooManyRequests", "message": "slow down"}}'),
            (200, {}, b'{"value": []}'),
            (200, {}, b'{"value": []}'),
        ]
    )
    crafted.answering = lambda request: next(answers)
    limiter = TenantLimiter()
    async with httpx.AsyncClient(transport=httpx.MockTransport(crafted.handle)) as http:
        bc = BusinessCentral(
            api_base=BC_HOST,
            http=http,
            tokens=FixedToken(),
            limiter=limiter,
            max_response_bytes=10_000,
            request_deadline_seconds=5,
        )
        with pytest.raises(FetchFailure) as throttled:
            await bc.get_collection(ENVIRONMENT, f"{ROOT}/salesInvoices")
        assert throttled.value.kind is FailureKind.THROTTLED
        started = time.monotonic()
        # Another refresh's read of the same tenant waits as BC asked...
        await bc.get_collection(ENVIRONMENT, f"{ROOT}/purchaseInvoices")
        assert time.monotonic() - started >= 0.9
        # ...and another tenant's does not.
        started = time.monotonic()
        await bc.get_collection(Environment(tenant="fabrikam.com", name="Production"), f"{ROOT}/companies")
        assert time.monotonic() - started < 0.5


# ---------------------------------------------------------------- next links


@pytest.mark.parametrize(
    "link",
    [
        # BC's own host with its default port spelled out: the same host (it was refused).
        f"{BC_HOST}:443/v2.0/contoso.com/Production/api/v2.0/salesInvoices?$skiptoken=2",
        "HTTPS://BC.TEST/v2.0/contoso.com/Production/api/v2.0/salesInvoices?$skiptoken=2",
        # Relative to the page, as OData allows.
        "salesInvoices?$skiptoken=2",
        "/v2.0/contoso.com/Production/api/v2.0/salesInvoices?$skiptoken=2",
    ],
)
async def test_a_next_link_to_bc_itself_is_followed_however_it_is_spelled(
    bc: BusinessCentral, crafted: CraftedBusinessCentral, link: str
) -> None:
    served: list[str] = []

    def answering(request: httpx.Request) -> tuple[int, dict[str, str], bytes]:
        served.append(str(request.url))
        if len(served) == 1:
            return 200, {}, json.dumps({"value": [{"n": 1}], "@odata.nextLink": link}).encode()
        return 200, {}, b'{"value": [{"n": 2}]}'

    crafted.answering = answering
    assert await bc.get_collection(ENVIRONMENT, f"{ROOT}/salesInvoices") == [{"n": 1}, {"n": 2}]
    assert served[1] == f"{ROOT}/salesInvoices?$skiptoken=2"


@pytest.mark.parametrize(
    ("link", "words"),
    [
        ("https://bc.test:abc/salesInvoices", "not a URL"),
        ("https://evil.example/v2.0/contoso.com/Production/api/v2.0/salesInvoices", "another host"),
        ("https://bc.test:8443/v2.0/contoso.com/Production/api/v2.0/salesInvoices", "another host"),
        ("http://bc.test/v2.0/contoso.com/Production/api/v2.0/salesInvoices", "another host"),
    ],
)
async def test_a_next_link_elsewhere_or_broken_is_a_bad_answer(
    bc: BusinessCentral, crafted: CraftedBusinessCentral, link: str, words: str
) -> None:
    """A broken one raised httpx's own error past the refresh, which then published no
    outcome and was delivered again until dead-lettered."""
    crafted.answering = always(200, json.dumps({"value": [{"n": 1}], "@odata.nextLink": link}).encode())
    with pytest.raises(FetchFailure) as failure:
        await bc.get_collection(ENVIRONMENT, f"{ROOT}/salesInvoices")
    assert failure.value.kind is FailureKind.BAD_RESPONSE
    assert words in (failure.value.message or "")


# ---------------------------------------------------------------- fields every read selects


@pytest.mark.parametrize(
    ("model", "entity", "missing"),
    [
        (
            SalesInvoice,
            {"number": "S1", "status": "Open", "dueDate": "2025-01-01", "totalAmountIncludingTax": 9},
            "remainingAmount",
        ),
        (
            SalesInvoice,
            {"number": "S2", "status": "Open", "remainingAmount": 500, "totalAmountIncludingTax": 500},
            "dueDate",
        ),
        (PurchaseInvoice, {"number": "P1", "status": "Open", "dueDate": "2025-01-01"}, "totalAmountIncludingTax"),
        (PurchaseInvoice, {"number": "P2", "status": "Open", "totalAmountIncludingTax": 40}, "dueDate"),
    ],
)
def test_an_invoice_without_a_field_its_read_selects_is_a_bad_answer(
    model: type[SalesInvoice | PurchaseInvoice], entity: dict[str, Any], missing: str
) -> None:
    """BC answers every field a read selects: an invoice without its amount is not one of
    0.00 (it counted as overdue, for nothing), nor one without its due date one never due
    (it left the overdue figures and the forecast)."""
    with pytest.raises(FetchFailure) as failure:
        parse_entities(model, [entity], "salesInvoices")
    assert failure.value.kind is FailureKind.BAD_RESPONSE
    assert missing in (failure.value.message or "")


# ---------------------------------------------------------------- Test Client URL's look into each company


async def test_a_company_bc_refuses_is_named_and_a_busy_bc_fails_no_test(
    bc: BusinessCentral, crafted: CraftedBusinessCentral
) -> None:
    """Of the companies listed, the one whose books BC refuses to the hub's app is named;
    BC throttling the look itself leaves the test's answer (the list) standing, unprobed
    (it failed the whole test as throttled)."""
    readable, refused = uuid.uuid4(), uuid.uuid4()
    companies = [Company.model_validate({"id": str(c), "name": n}) for c, n in ((readable, "A"), (refused, "B"))]
    reader = ClientReader(bc, web_client_base="https://businesscentral.test", use_cue_services=False)
    connection = ClientConnection(tenant=ENVIRONMENT.tenant, environment=ENVIRONMENT.name)
    permission = {
        "error": {
            "code": "Internal_ServerError",
            "message": "Sorry, the current permissions prevented the action. (TableData 98 Read: Accountant Hub)",
        }
    }
    crafted.answering = batch_answer(
        {"id": str(readable), "status": 200, "body": {"value": [{"localCurrencyCode": "EUR"}]}},
        {"id": str(refused), "status": 500, "body": permission},
    )
    unreadable, why = await reader.unreadable(connection, companies)
    assert unreadable == [refused]
    assert why is not None and why.kind is FailureKind.NO_COMPANY_ACCESS
    crafted.answering = always(
        429, b'{"error": {"code": "Application_TooManyRequests", "message": "Too many"}}', {"Retry-After": "1"}
    )
    assert await reader.unreadable(connection, companies) == ([], None)
