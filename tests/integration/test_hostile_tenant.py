"""A tenant's answer can never make the fetcher call another host (invariant 5), make it
buffer an unbounded body, loop on its next links or hold a request past its deadline: a
small local server plays a hostile BC."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from hub_common.events import FailureKind
from hub_fetcher.bc.client import BatchRequest, BusinessCentral, Environment
from hub_fetcher.bc.failures import FetchFailure
from hub_fetcher.bc.identity import TokenProvider
from hub_fetcher.bc.limits import TenantLimiter

PAGES: dict[str, bytes] = {}
SEEN: list[str] = []
# Paths answered a byte at a time, with this pause between bytes.
TRICKLING: dict[str, float] = {}


class HostileBusinessCentral(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        SEEN.append(self.path)
        path = self.path.split("?")[0]
        body = PAGES.get(path, b'{"value": []}')
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        pause = TRICKLING.get(path)
        if pause is None:
            self.wfile.write(body)
            return
        try:
            for index in range(len(body)):
                self.wfile.write(body[index : index + 1])
                self.wfile.flush()
                time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self) -> None:  # $batch: the canned answer of its path
        SEEN.append(self.path)
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = PAGES.get(self.path.split("?")[0], b'{"responses": []}')
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class FixedToken(TokenProvider):
    """The identity is not under test here: a fixed bearer token instead of Entra."""

    def __init__(self) -> None:
        pass

    async def token_for(self, tenant: str) -> str:
        return "token"


@pytest.fixture
def hostile() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), HostileBusinessCentral)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    SEEN.clear()
    TRICKLING.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
async def bc(hostile: str) -> AsyncIterator[BusinessCentral]:
    async with httpx.AsyncClient(timeout=5) as http:
        yield BusinessCentral(
            api_base=hostile,
            http=http,
            tokens=FixedToken(),
            limiter=TenantLimiter(),
            max_response_bytes=10_000,
            request_deadline_seconds=3,
        )


ENVIRONMENT = Environment(tenant="contoso.com", name="Production")
COMPANIES = "/v2.0/contoso.com/Production/api/v2.0/companies"
BATCH = "/v2.0/contoso.com/Production/api/v2.0/$batch"


@pytest.mark.parametrize(
    "next_link",
    ["https://evil.example/steal", "http://127.0.0.1:1/other-port", "http://localhost/same-machine-other-name"],
)
async def test_a_next_link_to_another_host_is_refused(bc: BusinessCentral, hostile: str, next_link: str) -> None:
    PAGES[COMPANIES] = json.dumps({"value": [{"id": "x"}], "@odata.nextLink": next_link}).encode()
    with pytest.raises(FetchFailure) as raised:
        await bc.get_collection(ENVIRONMENT, f"{hostile}{COMPANIES}", company_scoped=False)
    assert raised.value.kind is FailureKind.BAD_RESPONSE
    assert "another host" in (raised.value.message or "")
    assert SEEN == [COMPANIES]


async def test_a_next_link_on_the_same_host_is_followed(bc: BusinessCentral, hostile: str) -> None:
    PAGES[COMPANIES] = json.dumps({"value": [{"id": 1}], "@odata.nextLink": f"{hostile}/page2?$skiptoken=a"}).encode()
    PAGES["/page2"] = json.dumps({"value": [{"id": 2}]}).encode()
    items = await bc.get_collection(ENVIRONMENT, f"{hostile}{COMPANIES}", company_scoped=False)
    assert items == [{"id": 1}, {"id": 2}]
    assert SEEN == [COMPANIES, "/page2?$skiptoken=a"]


async def test_an_oversized_answer_is_refused_not_buffered(bc: BusinessCentral, hostile: str) -> None:
    PAGES[COMPANIES] = json.dumps({"value": [{"name": "x" * 20_000}]}).encode()
    with pytest.raises(FetchFailure) as raised:
        await bc.get_collection(ENVIRONMENT, f"{hostile}{COMPANIES}", company_scoped=False)
    assert raised.value.kind is FailureKind.BAD_RESPONSE
    assert "byte limit" in (raised.value.message or "")


@pytest.mark.parametrize("body", [b"[1, 2]", b'{"value": "not a list"}', b'{"value": [1, 2]}', b"\xff\xfe"])
async def test_answers_of_the_wrong_shape_are_bad_responses(bc: BusinessCentral, hostile: str, body: bytes) -> None:
    PAGES[COMPANIES] = body
    with pytest.raises(FetchFailure) as raised:
        await bc.get_collection(ENVIRONMENT, f"{hostile}{COMPANIES}", company_scoped=False)
    assert raised.value.kind is FailureKind.BAD_RESPONSE


@pytest.mark.parametrize("answer", [{"@odata.context": "$metadata#salesOrders"}, {"value": None}])
async def test_a_batch_answer_without_a_value_list_is_a_bad_response(bc: BusinessCentral, answer: object) -> None:
    """Every read in a $batch is of a collection: an answer without one is not a single
    record (it became a made-up sales order of amount 0, counted on the dashboard)."""
    responses = [{"id": "orders", "status": 200, "headers": {}, "body": answer}]
    PAGES[BATCH] = json.dumps({"responses": responses}).encode()
    with pytest.raises(FetchFailure) as raised:
        await bc.batch_collections(ENVIRONMENT, [BatchRequest("orders", "companies(x)/salesOrders")])
    assert raised.value.kind is FailureKind.BAD_RESPONSE


async def test_a_next_link_that_repeats_a_page_is_a_bad_answer_at_once(bc: BusinessCentral, hostile: str) -> None:
    PAGES[COMPANIES] = json.dumps({"value": [{"id": 1}], "@odata.nextLink": f"{hostile}/page2?$skiptoken=a"}).encode()
    PAGES["/page2"] = json.dumps({"value": [{"id": 2}], "@odata.nextLink": f"{hostile}/page2?$skiptoken=a"}).encode()
    with pytest.raises(FetchFailure) as raised:
        await bc.get_collection(ENVIRONMENT, f"{hostile}{COMPANIES}", company_scoped=False)
    assert raised.value.kind is FailureKind.BAD_RESPONSE
    assert "already read" in (raised.value.message or "")
    assert SEEN == [COMPANIES, "/page2?$skiptoken=a"], "the repeated page is not asked for again"


async def test_a_next_link_back_to_the_first_page_is_a_bad_answer(bc: BusinessCentral, hostile: str) -> None:
    PAGES[COMPANIES] = json.dumps({"value": [{"id": 1}], "@odata.nextLink": f"{hostile}{COMPANIES}"}).encode()
    with pytest.raises(FetchFailure) as raised:
        await bc.get_collection(ENVIRONMENT, f"{hostile}{COMPANIES}", company_scoped=False)
    assert raised.value.kind is FailureKind.BAD_RESPONSE
    assert SEEN == [COMPANIES]


async def test_a_trickling_answer_ends_as_a_timeout_at_the_request_deadline(bc: BusinessCentral, hostile: str) -> None:
    # A byte every 0.5 s: every read gets data within the client's 5 s read timeout, so only
    # the 3 s deadline on the whole answer ends it.
    PAGES[COMPANIES] = json.dumps({"value": [{"id": 1}] * 20}).encode()
    TRICKLING[COMPANIES] = 0.5
    with pytest.raises(FetchFailure) as raised:
        await bc.get_collection(ENVIRONMENT, f"{hostile}{COMPANIES}", company_scoped=False)
    assert raised.value.kind is FailureKind.TIMEOUT
    assert raised.value.transient
    assert "HUB_BC_REQUEST_DEADLINE_SECONDS" in (raised.value.message or "")
