"""Reading statements from a BC that answers badly: a small local server plays the tenant.

Whatever it sends (missing or malformed fields, endless lines, links elsewhere, errors in
a $batch), the reader raises a classified failure and the command answers a rejection;
nothing crashes. It also plays a company whose fiscal year starts in July."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import unquote

import httpx
import pytest

from hub_common import commands
from hub_common.commands import RejectionReason
from hub_common.events import Actor, ClientConnection, FailureKind
from hub_common.statements import CompanyStatements
from hub_fetcher.bc.client import BusinessCentral
from hub_fetcher.bc.failures import FetchFailure
from hub_fetcher.bc.limits import TenantLimiter
from hub_fetcher.statements import REPLY_HEADERS_ROOM_BYTES, StatementsReader, answer_read_statements
from tests.integration.test_hostile_tenant import FixedToken

AS_OF = dt.date(2026, 5, 19)
COMPANY = uuid.UUID("11111111-2222-3333-4444-555555555555")
CONNECTION = ClientConnection(tenant="contoso.com", environment="Production")


def _statement(amount: str) -> dict[str, Any]:
    return {
        "value": [
            {"lineNumber": 20000, "display": "Cash", amount: 1234.5, "lineType": "detail", "indentation": 1},
            {"lineNumber": 10000, "display": "Assets", amount: 0, "lineType": "header", "indentation": 0},
            {"lineNumber": 30000, "display": "Total", amount: 1234.5, "lineType": "total", "indentation": 0},
        ]
    }


def _aged(key: str) -> dict[str, Any]:
    amounts = {"currentAmount": 1, "period1Amount": 2, "period2Amount": 3, "period3Amount": 4, "balanceDue": 10}
    return {
        "value": [
            {key: str(uuid.uuid4()), "name": "Adatum", "currencyCode": "", **amounts},
            {key: "00000000-0000-0000-0000-000000000000", "name": "Total", "currencyCode": "", **amounts},
        ]
    }


def _good_answers() -> dict[str, dict[str, Any]]:
    return {
        "companyInformation": {"value": [{"currencyCode": "EUR", "currentFiscalYearStartDate": "2026-01-01"}]},
        "generalLedgerSetup": {"value": [{"localCurrencyCode": "EUR"}]},
        "balanceSheets": _statement("balance"),
        "incomeStatements": _statement("netChange"),
        "cashFlowStatements": _statement("netChange"),
        "retainedEarningsStatements": _statement("netChange"),
        "trialBalances": {
            "value": [
                {
                    "number": "10100",
                    "display": "Checking",
                    "accountType": "Posting",
                    "totalDebit": "1,234.50",
                    "totalCredit": "",
                    "balanceAtDateDebit": "72,893.84",
                    "balanceAtDateCredit": "0.00",
                },
                {"number": "19999", "display": "Total", "accountType": "End_x002D_Total"},
            ]
        },
        "agedAccountsReceivables": _aged("customerId"),
        "agedAccountsPayables": _aged("vendorId"),
    }


class FakeTenant:
    """What the fake BC answers (by entity set) and what it was asked, reset per test."""

    answers: ClassVar[dict[str, dict[str, Any]]] = {}
    statuses: ClassVar[dict[str, int]] = {}
    pages: ClassVar[dict[str, dict[str, Any]]] = {}
    batches: ClassVar[list[list[str]]] = []
    gets: ClassVar[list[str]] = []
    # How long each answer takes: a slow tenant.
    delay_seconds: ClassVar[float] = 0.0


def _entity_set(url: str) -> str:
    return unquote(url).split("?")[0].rsplit("/", 1)[-1]


class FakeBusinessCentral(BaseHTTPRequestHandler):
    def _send(self, document: object) -> None:
        body = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        time.sleep(FakeTenant.delay_seconds)
        requests = json.loads(self.rfile.read(int(self.headers["content-length"])))["requests"]
        FakeTenant.batches.append([unquote(r["url"]) for r in requests])
        responses = []
        for request in requests:
            name = _entity_set(request["url"])
            status = FakeTenant.statuses.get(name, 200)
            body = FakeTenant.answers.get(name, {"value": []})
            responses.append({"id": request["id"], "status": status, "headers": {}, "body": body})
        self._send({"responses": responses})

    def do_GET(self) -> None:
        time.sleep(FakeTenant.delay_seconds)
        FakeTenant.gets.append(self.path)
        self._send(FakeTenant.pages.get(self.path.split("?")[0], {"value": []}))

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def fake_bc() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeBusinessCentral)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeTenant.answers = _good_answers()
    FakeTenant.statuses = {}
    FakeTenant.pages = {}
    FakeTenant.batches = []
    FakeTenant.gets = []
    FakeTenant.delay_seconds = 0.0
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
async def reader(fake_bc: str) -> AsyncIterator[StatementsReader]:
    async with httpx.AsyncClient(timeout=5) as http:
        bc = BusinessCentral(
            api_base=fake_bc,
            http=http,
            tokens=FixedToken(),
            limiter=TenantLimiter(),
            max_response_bytes=5_000_000,
            request_deadline_seconds=10,
        )
        yield StatementsReader(bc)


async def _failure(reader: StatementsReader) -> FetchFailure:
    with pytest.raises(FetchFailure) as raised:
        await reader.read(CONNECTION, COMPANY, as_of=AS_OF)
    return raised.value


async def test_good_answers_are_read_in_one_batch(reader: StatementsReader) -> None:
    statements = await reader.read(CONNECTION, COMPANY, as_of=AS_OF)
    assert len(FakeTenant.batches) == 1
    assert len(FakeTenant.batches[0]) == 11
    assert statements.currency_code == "EUR"
    # Sorted by BC's line number, whatever order the lines came in.
    assert [line.description for line in statements.balance_sheet.lines] == ["Assets", "Cash", "Total"]
    tb = statements.trial_balance.lines
    assert (tb[0].net_change_debit, tb[0].net_change_credit, tb[0].balance_debit) == (
        Decimal("1234.50"),
        None,
        Decimal("72893.84"),
    )
    assert tb[1].account_type == "End-Total"
    assert [line.name for line in statements.aged_receivables.lines] == ["Adatum"]
    requested = " ".join(FakeTenant.batches[0])
    assert "dateFilter eq 2026-05-19" in requested
    assert "dateFilter ge 2026-01-01 and dateFilter le 2026-05-19" in requested
    assert "agedAsOfDate eq 2026-05-19 and periodLengthFilter eq '30D'" in requested


async def test_a_fiscal_year_from_july_reads_the_period_statements_again(reader: StatementsReader) -> None:
    FakeTenant.answers["companyInformation"] = {
        "value": [{"currencyCode": "EUR", "currentFiscalYearStartDate": "2025-07-01"}]
    }
    statements = await reader.read(CONNECTION, COMPANY, as_of=AS_OF)
    assert len(FakeTenant.batches) == 2
    assert sorted(_entity_set(url) for url in FakeTenant.batches[1]) == [
        "cashFlowStatements",
        "incomeStatements",
        "retainedEarningsStatements",
        "trialBalances",
    ]
    assert all("dateFilter ge 2025-07-01 and dateFilter le 2026-05-19" in url for url in FakeTenant.batches[1])
    assert statements.fiscal_year_start == dt.date(2025, 7, 1)
    assert statements.income_statement.period_start == dt.date(2025, 7, 1)
    assert statements.trial_balance.period_start == dt.date(2025, 7, 1)


async def test_a_changed_year_end_is_read_from_the_accounting_periods(reader: StatementsReader) -> None:
    """The year end moved from December to June: the short year runs January to June 2026
    and the next one, set up ahead, opens on 1 July. companyInformation names that one;
    the year holding the date is the one the accounting periods opened last before it."""
    FakeTenant.answers["companyInformation"] = {
        "value": [{"currencyCode": "EUR", "currentFiscalYearStartDate": "2026-07-01"}]
    }
    FakeTenant.answers["accountingPeriods"] = {"value": [{"startingDate": "2026-01-01"}]}
    statements = await reader.read(CONNECTION, COMPANY, as_of=AS_OF)
    opened, last = [url for url in FakeTenant.batches[0] if _entity_set(url) == "accountingPeriods"]
    assert "$filter=newFiscalYear eq true and startingDate le 2026-05-19" in opened
    assert "$orderby=startingDate desc&$top=1" in opened
    assert "$filter" not in last and "$orderby=startingDate desc&$top=1" in last
    assert len(FakeTenant.batches) == 1, "the calendar year was read already"
    assert statements.fiscal_year_start == dt.date(2026, 1, 1)
    assert statements.income_statement.period_start == dt.date(2026, 1, 1)


async def test_a_retail_year_of_52_weeks_starts_where_its_period_does(reader: StatementsReader) -> None:
    FakeTenant.answers["accountingPeriods"] = {"value": [{"startingDate": "2025-06-01"}]}
    statements = await reader.read(CONNECTION, COMPANY, as_of=AS_OF)
    assert len(FakeTenant.batches) == 2
    assert all("dateFilter ge 2025-06-01 and dateFilter le 2026-05-19" in url for url in FakeTenant.batches[1])
    assert statements.fiscal_year_start == statements.trial_balance.period_start == dt.date(2025, 6, 1)


async def test_accounting_periods_refused_fall_back_to_the_current_fiscal_year(reader: StatementsReader) -> None:
    FakeTenant.answers["companyInformation"] = {
        "value": [{"currencyCode": "EUR", "currentFiscalYearStartDate": "2025-07-01"}]
    }
    FakeTenant.statuses["accountingPeriods"] = 403
    FakeTenant.answers["accountingPeriods"] = {"error": {"code": "Internal_ServerError", "message": "no permission"}}
    statements = await reader.read(CONNECTION, COMPANY, as_of=AS_OF)
    assert statements.fiscal_year_start == dt.date(2025, 7, 1)


async def test_next_links_on_the_same_host_are_followed(reader: StatementsReader, fake_bc: str) -> None:
    FakeTenant.answers["agedAccountsPayables"] = {
        "value": [],
        "@odata.nextLink": f"{fake_bc}/v2.0/contoso.com/Production/api/v2.0/page2?$skiptoken=x",
    }
    FakeTenant.pages["/v2.0/contoso.com/Production/api/v2.0/page2"] = _aged("vendorId")
    statements = await reader.read(CONNECTION, COMPANY, as_of=AS_OF)
    assert [line.name for line in statements.aged_payables.lines] == ["Adatum"]
    assert len(FakeTenant.gets) == 1


async def test_a_slow_tenant_ends_at_the_statements_deadline(fake_bc: str) -> None:
    """Each answer comes within every per-request deadline, but page after page: the whole
    read ends when nobody waits for it any longer, not after 1,000 pages."""
    pages = "/v2.0/contoso.com/Production/api/v2.0/page"
    FakeTenant.answers["agedAccountsPayables"] = {"value": [], "@odata.nextLink": f"{fake_bc}{pages}1?$skiptoken=1"}
    for number in range(1, 50):
        FakeTenant.pages[f"{pages}{number}"] = {
            "value": [],
            "@odata.nextLink": f"{fake_bc}{pages}{number + 1}?$skiptoken={number + 1}",
        }
    FakeTenant.delay_seconds = 0.2
    async with httpx.AsyncClient(timeout=5) as http:
        bc = BusinessCentral(
            api_base=fake_bc,
            http=http,
            tokens=FixedToken(),
            limiter=TenantLimiter(),
            max_response_bytes=5_000_000,
            request_deadline_seconds=10,
        )
        started = time.monotonic()
        failure = await _failure(StatementsReader(bc, deadline_seconds=1.5))
    assert failure.kind is FailureKind.TIMEOUT
    assert "HUB_STATEMENTS_DEADLINE_SECONDS" in (failure.message or "")
    assert time.monotonic() - started < 4
    assert 2 <= len(FakeTenant.gets) < 10


async def test_a_next_link_to_another_host_is_refused(reader: StatementsReader) -> None:
    FakeTenant.answers["balanceSheets"] = {"value": [], "@odata.nextLink": "https://evil.example/steal"}
    failure = await _failure(reader)
    assert failure.kind is FailureKind.BAD_RESPONSE
    assert FakeTenant.gets == []


@pytest.mark.parametrize(
    ("entity_set", "row", "what"),
    [
        ("balanceSheets", {"lineNumber": 1, "display": "No balance"}, "balanceSheets"),
        ("incomeStatements", {"lineNumber": 1, "netChange": "lots"}, "incomeStatements"),
        ("incomeStatements", {"lineNumber": 1, "netChange": 1, "indentation": -1}, "incomeStatements"),
        ("cashFlowStatements", {"lineNumber": "x", "netChange": 1}, "cashFlowStatements"),
        ("trialBalances", {"number": "1", "totalDebit": "12 apples"}, "trialBalances"),
        ("trialBalances", {"number": "1", "totalDebit": True}, "trialBalances"),
        ("trialBalances", {"display": "no number"}, "trialBalances"),
        ("agedAccountsReceivables", {"customerId": "not-a-guid", "balanceDue": 1}, "agedAccountsReceivables"),
        ("agedAccountsPayables", {"vendorId": str(uuid.uuid4()), "balanceDue": 1e300}, "agedAccountsPayables"),
        # Written "Infinity", which JSON has not: the whole $batch answer is refused, as such.
        ("agedAccountsPayables", {"vendorId": str(uuid.uuid4()), "balanceDue": 1e400}, "$batch is not JSON: Infinity"),
    ],
)
async def test_malformed_rows_are_bad_responses(
    reader: StatementsReader, entity_set: str, row: dict[str, Any], what: str
) -> None:
    FakeTenant.answers[entity_set] = {"value": [row]}
    failure = await _failure(reader)
    assert failure.kind is FailureKind.BAD_RESPONSE
    assert what in (failure.message or "")


async def test_an_amount_too_large_for_any_statement_is_a_bad_response(reader: StatementsReader) -> None:
    FakeTenant.answers["trialBalances"] = {"value": [{"number": "1", "display": "x", "totalDebit": 1e40}]}
    failure = await _failure(reader)
    assert failure.kind is FailureKind.BAD_RESPONSE
    assert "out of range" in (failure.message or "")


async def test_a_missing_company_information_is_a_bad_response(reader: StatementsReader) -> None:
    FakeTenant.answers["companyInformation"] = {"value": []}
    failure = await _failure(reader)
    assert failure.kind is FailureKind.BAD_RESPONSE
    assert "companyInformation" in (failure.message or "")


async def test_endless_statements_are_refused(reader: StatementsReader) -> None:
    row = {"lineNumber": 1, "display": "x", "balance": 1}
    FakeTenant.answers["balanceSheets"] = {"value": [row] * 20_001}
    failure = await _failure(reader)
    assert failure.kind is FailureKind.BAD_RESPONSE
    assert "more than 20000" in (failure.message or "")


async def test_odd_values_are_read_sensibly(reader: StatementsReader) -> None:
    FakeTenant.answers["balanceSheets"] = {
        "value": [
            {"lineNumber": 1, "display": None, "balance": 1, "lineType": "subtotal", "indentation": 50},
            {"lineNumber": 2, "display": "x", "balance": 0.1 + 0.2, "lineType": None},
        ]
    }
    statements = await reader.read(CONNECTION, COMPANY, as_of=AS_OF)
    first, second = statements.balance_sheet.lines
    assert (first.description, first.line_type, first.indentation) == ("", "detail", 10)
    assert str(second.amount) == "0.30"
    assert second.line_type == "detail"


@pytest.mark.parametrize(
    ("status", "kind"),
    [(403, FailureKind.NO_COMPANY_ACCESS), (400, FailureKind.BAD_RESPONSE), (429, FailureKind.THROTTLED)],
)
async def test_an_error_inside_the_batch_is_classified(
    reader: StatementsReader, status: int, kind: FailureKind
) -> None:
    FakeTenant.statuses["trialBalances"] = status
    FakeTenant.answers["trialBalances"] = {"error": {"code": "Internal_ServerError", "message": "Something failed."}}
    failure = await _failure(reader)
    assert failure.kind is kind
    assert failure.http_status == status


@pytest.mark.parametrize("status", [400, 403, 404, 500])
async def test_a_statement_bc_cannot_compute_says_why_and_the_rest_is_read(
    reader: StatementsReader, status: int
) -> None:
    """G/L Setup names no cash flow report (a company migrated from NAV): BC fails that
    one read, and the workbook still has every other statement."""
    FakeTenant.statuses["cashFlowStatements"] = status
    FakeTenant.answers["cashFlowStatements"] = {
        "error": {"code": "Application_TestField", "message": "Fin. Rep. for Cash Flow Stmt must have a value."}
    }
    statements = await reader.read(CONNECTION, COMPANY, as_of=AS_OF)
    assert statements.cash_flow_statement.lines == []
    assert "Fin. Rep. for Cash Flow Stmt must have a value." in (statements.cash_flow_statement.unavailable or "")
    assert statements.balance_sheet.lines and statements.balance_sheet.unavailable is None
    assert statements.income_statement.lines and statements.trial_balance.lines


async def test_a_throttled_statement_still_fails_the_whole_read_to_be_tried_again(reader: StatementsReader) -> None:
    FakeTenant.statuses["cashFlowStatements"] = 429
    FakeTenant.answers["cashFlowStatements"] = {"error": {"code": "Application_TooManyRequests", "message": "Slow"}}
    assert (await _failure(reader)).kind is FailureKind.THROTTLED


def _command_body() -> bytes:
    return (
        commands.ReadStatements(
            firm_id=uuid.uuid4(),
            actor=Actor.service("test"),
            correlation_id="c-1",
            connection=CONNECTION,
            company_id=COMPANY,
            as_of=AS_OF,
        )
        .model_dump_json()
        .encode()
    )


async def _granted(firm_id: uuid.UUID, connection: ClientConnection) -> bool:
    return True


async def _not_granted(firm_id: uuid.UUID, connection: ClientConnection) -> bool:
    return False


async def test_a_firm_without_a_grant_reads_no_statements(reader: StatementsReader) -> None:
    reply = await answer_read_statements(reader, _command_body(), max_payload=1_000_000, may_read=_not_granted)
    rejection = commands.CommandReply[CompanyStatements].model_validate_json(reply).rejection
    assert rejection is not None
    assert rejection.reason is RejectionReason.FORBIDDEN
    assert rejection.failure is not None
    assert rejection.failure.kind is FailureKind.ACCESS_NOT_GRANTED


async def test_the_command_answers_statements_or_a_rejection(reader: StatementsReader) -> None:
    reply = await answer_read_statements(reader, _command_body(), max_payload=1_000_000, may_read=_granted)
    assert reply.startswith(commands.GZIP_MAGIC)
    parsed = commands.CommandReply[CompanyStatements].model_validate_json(commands.decompress_reply(reply))
    assert parsed.result is not None
    assert parsed.result.company_id == COMPANY

    too_small = await answer_read_statements(
        reader, _command_body(), max_payload=REPLY_HEADERS_ROOM_BYTES + 100, may_read=_granted
    )
    refused = commands.CommandReply[CompanyStatements].model_validate_json(too_small)
    assert refused.rejection is not None
    assert refused.rejection.reason is RejectionReason.UPSTREAM
    assert refused.rejection.failure is not None
    assert "bytes the broker carries" in (refused.rejection.failure.message or "")

    FakeTenant.statuses["balanceSheets"] = 429
    throttled = await answer_read_statements(reader, _command_body(), max_payload=1_000_000, may_read=_granted)
    rejection = commands.CommandReply[CompanyStatements].model_validate_json(throttled).rejection
    assert rejection is not None
    assert rejection.reason is RejectionReason.UNAVAILABLE
    assert rejection.failure is not None
    assert rejection.failure.kind is FailureKind.THROTTLED
