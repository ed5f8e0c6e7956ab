"""Reading Business Central's API v2.0 over one pooled httpx.AsyncClient.

Every URL is built from the configured BC host plus validated tenant, environment and
company segments; ``@odata.nextLink`` is followed only when it points back at that host,
so nothing a tenant answers can make the hub call elsewhere (invariant 5), and never to a
page already read, so a link that repeats itself is a bad answer at once, not a loop.

Every request has a total deadline, connecting and sending it and reading its whole
answer: httpx's timeouts bound each read, so an answer trickling in a byte at a time
would otherwise never end. Waiting for a tenant's request slot is not part of it.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit

import httpx
from opentelemetry.trace import SpanKind

from hub_common import metrics
from hub_common.events import FailureKind
from hub_common.retry_after import parse_retry_after
from hub_common.tracing import tracer
from hub_fetcher.bc.failures import FetchFailure, classify_bc_error, correlation_from_message
from hub_fetcher.bc.identity import TokenProvider
from hub_fetcher.bc.limits import TenantLimiter

API_PATH = "api/v2.0"
MAX_PAGES = 1000
# What one answer, or one collection's pages together, may hold. A page of BC holds at most 20,000 entities
# and a $batch of the hub's reads ten such pages; an answer of "{}" after "{}" costs 64
# bytes of memory for every 3 bytes read, so it is refused while it is parsed, before a
# tenant's 50 MB answer becomes gigabytes for every firm the fetcher serves.
MAX_JSON_OBJECTS = 400_000
# The same for any value: "1.5," is a 104-byte Decimal for 4 bytes read, "[]," a list and
# '"ab",' a string of 50 bytes or more. Values are bounded before parsing (a value but the
# first follows a comma, or opens an array), numbers while parsing. The hub's reads select
# few fields: 400,000 entities of the largest read fit both.
MAX_JSON_VALUES = 3_000_000
MAX_JSON_NUMBERS = 1_000_000
# How long every read of a tenant BC throttled waits when BC does not say (no Retry-After).
THROTTLED_HOLD_OFF_SECONDS = 5.0
# BC refusing the token: once more with a fresh one before it counts as rejected credentials.
UNAUTHORIZED = 401
MAX_BATCH_REQUESTS = 100


# zlib's window for a gzip stream (its header and trailer included).
GZIP_WINDOW = 16 + zlib.MAX_WBITS
# BC writes its messages in the request's language, else in the app's own: a Danish
# client's "permission" or "No HTTP resource" would not be recognised (bc.failures reads
# some messages), and Check Errors would show text the accountant may not read.
MESSAGE_LANGUAGE = "en-US"


# Set, in a task that must know when its requests reach BC rather than wait in the tenant's
# queue for a slot (the cue services' grace counts from there), to an event that each of its
# requests sets once it holds its slot.
slot_taken: ContextVar[asyncio.Event | None] = ContextVar("slot_taken", default=None)


@dataclass(frozen=True)
class BatchRequest:
    """One GET inside a $batch; the URL is relative to the API root."""

    id: str
    relative_url: str
    # Asks BC for pages of at most this many entities (Prefer: odata.maxpagesize); the
    # next links are followed either way.
    max_page_size: int | None = None
    # A read the caller can do without: its permanent failure, or BC failing inside it,
    # is returned, not raised (another transient one is still raised, so the whole read is
    # tried again).
    optional: bool = False

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "Accept-Language": MESSAGE_LANGUAGE}
        if self.max_page_size is not None:
            headers["Prefer"] = f"odata.maxpagesize={self.max_page_size}"
        return headers


@dataclass(frozen=True)
class BatchRead:
    """The collections a $batch read, by request id, and the optional reads that failed."""

    collections: dict[str, list[dict[str, Any]]]
    failures: dict[str, FetchFailure]


@dataclass(frozen=True)
class BatchAnswer:
    status: int
    headers: dict[str, str]
    # None when the sub-response has no body or one that is not a JSON object.
    body: dict[str, Any] | None


@dataclass(frozen=True)
class _RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Answer:
    """BC's answer to a write: its status, headers (lower-case names) and JSON document."""

    status: int
    headers: dict[str, str]
    document: dict[str, Any] | None


@dataclass
class JsonAllowance:
    """What the pages of one collection may still hold together. A read that follows its
    next links shares one allowance across its pages, so pages of small values add up to no
    more than one answer may hold: otherwise each of a thousand pages could keep its own
    share in memory until the whole read is done."""

    values: int = MAX_JSON_VALUES
    objects: int = MAX_JSON_OBJECTS
    numbers: int = MAX_JSON_NUMBERS


def _parse_json(body: bytes, allowance: JsonAllowance | None = None) -> Any:
    """A BC body as JSON, its numbers with a fraction as Decimal: amounts of 16 or more
    digits would lose their cents as floats (329882455933742.36 reads 329882455933742.4).

    Raises ValueError for anything that is not JSON Python can hold, or that holds more
    values, objects or numbers than an answer of BC to the hub's reads (``allowance``: what
    the read's earlier pages left; by default, one answer's): besides JSONDecodeError and
    UnicodeDecodeError (both ValueErrors), an integer literal beyond Python's digit limit
    raises a plain ValueError and deep nesting ("[[[[...") a RecursionError, which is turned
    into one.
    """
    left = allowance if allowance is not None else JsonAllowance()
    # An upper bound (a comma or bracket inside a string counts too), counted without
    # allocating anything.
    values = body.count(b",") + body.count(b"[")
    if values > left.values:
        raise ValueError(f"more than {MAX_JSON_VALUES} JSON values in one answer and its next pages")
    left.values -= values

    def counted(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        left.objects -= 1
        if left.objects < 0:
            raise ValueError(f"more than {MAX_JSON_OBJECTS} JSON objects in one answer and its next pages")
        return dict(pairs)

    def number(kind: Callable[[str], Any]) -> Callable[[str], Any]:
        def parsed(text: str) -> Any:
            left.numbers -= 1
            if left.numbers < 0:
                raise ValueError(f"more than {MAX_JSON_NUMBERS} JSON numbers in one answer and its next pages")
            return kind(text)

        return parsed

    try:
        return json.loads(
            body,
            parse_float=number(Decimal),
            parse_int=number(int),
            parse_constant=_not_json,
            object_pairs_hook=counted,
        )
    except RecursionError as error:
        raise ValueError("JSON nested too deeply") from error


def _not_json(constant: str) -> NoReturn:
    # Python's json reads NaN and Infinity, which JSON (and BC) never writes.
    raise ValueError(f"{constant} is not a JSON value")


def _json_object(body: bytes, status: int, asked: str, allowance: JsonAllowance | None = None) -> dict[str, Any]:
    """``asked``: the method and path, which the message names (a $batch's answer is one)."""
    try:
        document = _parse_json(body, allowance)
    except ValueError as error:
        raise FetchFailure(
            FailureKind.BAD_RESPONSE, http_status=status, message=f"the answer to {asked} is not JSON: {error}"
        ) from error
    if not isinstance(document, dict):
        raise FetchFailure(FailureKind.BAD_RESPONSE, http_status=status, message="the answer is not a JSON object")
    return document


@dataclass(frozen=True)
class Environment:
    tenant: str
    name: str


def _count_answer(status: int | None) -> None:
    """Count an answer of BC by status class ("no_answer": none came), throttling on its own."""
    metrics.bc_responses_total.labels(status_class=f"{status // 100}xx" if status else "no_answer").inc()
    if status in metrics.BC_THROTTLING_STATUSES:
        metrics.bc_throttled_total.labels(status=str(status)).inc()


def _error_fields(document: object) -> tuple[str | None, str | None] | None:
    """The error code and message from BC's ``{"error": {"code": ..., "message": ...}}`` or
    the unwrapped ``{"code": ..., "message": ...}`` (the admin center's, and what a gateway
    in front of BC may send); None when the document has neither."""
    if not isinstance(document, dict):
        return None
    wrapped = document.get("error")
    error = wrapped if isinstance(wrapped, dict) else document
    code, message = error.get("code"), error.get("message")
    if not isinstance(code, str) and not isinstance(message, str):
        return None
    return (code if isinstance(code, str) else None, message if isinstance(message, str) else None)


class BusinessCentral:
    def __init__(
        self,
        *,
        api_base: str,
        http: httpx.AsyncClient,
        tokens: TokenProvider,
        limiter: TenantLimiter,
        max_response_bytes: int,
        request_deadline_seconds: float,
    ) -> None:
        self._api_base = api_base.rstrip("/")
        base = httpx.URL(self._api_base)
        self._origin = (base.scheme, base.host, base.port)
        self._http = http
        self._tokens = tokens
        self._limiter = limiter
        self._max_response_bytes = max_response_bytes
        self._request_deadline_seconds = request_deadline_seconds
        # BC sends the first byte of a $batch answer only once it has run every operation
        # in it (its own operation timeout is 8 minutes), so the wait for the next bytes is
        # bounded by the request's deadline alone, not by the client's read timeout (which
        # still bounds Entra's answers).
        configured = http.timeout
        self._timeout = httpx.Timeout(
            connect=configured.connect, read=None, write=configured.write, pool=configured.pool
        )
        self.requests_made = 0

    def root(self, environment: Environment) -> str:
        return (
            f"{self._api_base}/v2.0/{quote(environment.tenant, safe='')}/{quote(environment.name, safe='')}/{API_PATH}"
        )

    def cue_service_url(self, environment: Environment, company_name: str, service: str) -> str:
        """An ODataV4 web service of one company, addressed by name as BC does."""
        quoted_name = quote(company_name.replace("'", "''"), safe="")
        return (
            f"{self._api_base}/v2.0/{quote(environment.tenant, safe='')}/"
            f"{quote(environment.name, safe='')}/ODataV4/Company('{quoted_name}')/{service}"
        )

    def _same_host(self, url: str) -> bool:
        # httpx's reading: host in lower case, a scheme's default port (":443") as none.
        try:
            parts = httpx.URL(url)
        except httpx.InvalidURL:
            return False
        return (parts.scheme, parts.host, parts.port) == self._origin

    @staticmethod
    def _next_link(link: str, answered_url: str) -> str:
        """A ``@odata.nextLink`` as the URL to ask: OData lets it be relative to the page it
        came with; one that is no URL at all is a bad answer, not a crash."""
        try:
            return str(httpx.URL(answered_url).join(link))
        except httpx.InvalidURL as error:
            raise FetchFailure(FailureKind.BAD_RESPONSE, message=f"@odata.nextLink is not a URL: {error}") from error

    async def _read_capped(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self._max_response_bytes:
            raise FetchFailure(
                FailureKind.BAD_RESPONSE,
                http_status=response.status_code,
                message=f"response of {declared} bytes exceeds the {self._max_response_bytes} byte limit",
            )
        # Inflated here, never more than the limit: httpx would inflate each chunk whole, and
        # an answer gzipped twice ("gzip, gzip") inflates a few hundred bytes to gigabytes.
        coding = response.headers.get("content-encoding", "identity").strip().lower()
        if coding not in ("identity", "gzip"):
            raise FetchFailure(
                FailureKind.BAD_RESPONSE,
                http_status=response.status_code,
                message=f"an answer encoded as {coding[:50]!r}; the hub accepts gzip only",
            )
        inflater = zlib.decompressobj(GZIP_WINDOW) if coding == "gzip" else None
        chunks: list[bytes] = []
        size = 0
        async for raw in response.aiter_raw():
            if inflater is None:
                chunk = raw
            else:
                try:
                    # At most one byte past the limit: enough to know it is too large.
                    chunk = inflater.decompress(raw, self._max_response_bytes - size + 1)
                except zlib.error as error:
                    raise FetchFailure(
                        FailureKind.BAD_RESPONSE,
                        http_status=response.status_code,
                        message=f"a gzip answer that does not inflate: {error}",
                    ) from error
            size += len(chunk)
            if size > self._max_response_bytes:
                raise FetchFailure(
                    FailureKind.BAD_RESPONSE,
                    http_status=response.status_code,
                    message=f"response exceeds the {self._max_response_bytes} byte limit",
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def _send(
        self,
        environment: Environment,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: object | None = None,
        company_scoped: bool,
        weight: int = 1,
        read_only: bool = False,
        allowance: JsonAllowance | None = None,
    ) -> dict[str, Any]:
        """One request to BC; any non-success answer becomes a classified FetchFailure."""
        answer = await self._exchange(
            environment,
            method,
            url,
            params=params,
            json_body=json_body,
            company_scoped=company_scoped,
            weight=weight,
            read_only=read_only,
        )
        return _json_object(answer.body, answer.status, f"{method} {urlsplit(url).path}", allowance)

    async def write(
        self,
        environment: Environment,
        method: str,
        url: str,
        *,
        json_body: object | None = None,
        if_match: str | None = None,
    ) -> Answer:
        """A request about something the hub changes at BC (subscriptions), reads of it
        included, which must see the primary database, never a replica that lags: the
        status, headers and JSON body (None for 204), or a classified FetchFailure."""
        answer = await self._exchange(
            environment, method, url, json_body=json_body, company_scoped=False, if_match=if_match
        )
        document = (
            _json_object(answer.body, answer.status, f"{method} {urlsplit(url).path}") if answer.body.strip() else None
        )
        return Answer(status=answer.status, headers=answer.headers, document=document)

    async def _exchange(
        self,
        environment: Environment,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: object | None = None,
        company_scoped: bool,
        weight: int = 1,
        if_match: str | None = None,
        read_only: bool = False,
    ) -> _RawAnswer:
        """One request to BC; a 401 is tried once more with a fresh token. A cached token can
        outlive what it was issued for (the client withdrew the app's consent, an expiry
        BC saw first): asking Entra again then says what is really wrong (consent missing),
        or the same 401 says the credentials are rejected."""

        async def once() -> _RawAnswer:
            return await self._exchange_once(
                environment,
                method,
                url,
                params=params,
                json_body=json_body,
                company_scoped=company_scoped,
                weight=weight,
                if_match=if_match,
                read_only=read_only,
            )

        try:
            return await once()
        except FetchFailure as failure:
            if failure.kind is not FailureKind.CREDENTIALS_REJECTED or failure.http_status != UNAUTHORIZED:
                raise
        return await once()

    async def _exchange_once(
        self,
        environment: Environment,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: object | None = None,
        company_scoped: bool,
        weight: int = 1,
        if_match: str | None = None,
        read_only: bool = False,
    ) -> _RawAnswer:
        if not self._same_host(url):
            raise FetchFailure(FailureKind.BAD_RESPONSE, message="refused to follow a link to another host")
        # A token from Entra is fetched before the wait for a slot, so no BC slot is held
        # while Entra answers...
        await self._tokens.token_for(environment.tenant)
        headers = {"Accept": "application/json", "Accept-Encoding": "gzip", "Accept-Language": MESSAGE_LANGUAGE}
        if read_only:
            headers["Data-Access-Intent"] = "ReadOnly"
        if if_match is not None:
            headers["If-Match"] = if_match
        async with self._limiter.slot(environment.tenant, weight):
            if (taken := slot_taken.get()) is not None:
                taken.set()
            # ...and taken again once the slot is ours: the wait may have outlasted it (BC
            # answers 401 Authentication_TokenExpired); msal's cache answers without Entra.
            headers["Authorization"] = f"Bearer {await self._tokens.token_for(environment.tenant)}"
            self.requests_made += 1
            try:
                with tracer.start_as_current_span(f"BC {method}", kind=SpanKind.CLIENT) as span:
                    span.set_attribute("url.path", urlsplit(url).path)
                    answered = False
                    try:
                        async with asyncio.timeout(self._request_deadline_seconds):
                            async with self._http.stream(
                                method, url, params=params, headers=headers, json=json_body, timeout=self._timeout
                            ) as response:
                                answered = True
                                span.set_attribute("http.response.status_code", response.status_code)
                                _count_answer(response.status_code)
                                body = await self._read_capped(response)
                    except (TimeoutError, httpx.HTTPError):
                        if not answered:
                            _count_answer(None)
                        raise
            except TimeoutError as error:
                raise FetchFailure(
                    FailureKind.TIMEOUT,
                    message=f"no complete answer from BC within {self._request_deadline_seconds:g} s "
                    f"({method} {urlsplit(url).path}; HUB_BC_REQUEST_DEADLINE_SECONDS)",
                ) from error
            except httpx.TimeoutException as error:
                raise FetchFailure(
                    FailureKind.TIMEOUT, message=f"{type(error).__name__} while waiting for BC"
                ) from error
            except httpx.HTTPError as error:
                raise FetchFailure(FailureKind.TIMEOUT, message=f"connection to BC failed: {error}") from error
        if response.status_code >= 400:
            try:
                fields = _error_fields(_parse_json(body))
            except ValueError:
                fields = None
            # Not BC's error shape: the answer's first characters say what came instead.
            code, message = fields or (None, body[:500].decode(errors="replace") or None)
            await self._raise_for_error(
                response.status_code, response.headers, code, message, environment, company_scoped=company_scoped
            )
        return _RawAnswer(
            status=response.status_code, headers={k.lower(): v for k, v in response.headers.items()}, body=body
        )

    async def get_json(
        self,
        environment: Environment,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        company_scoped: bool,
        read_only: bool = True,
        allowance: JsonAllowance | None = None,
    ) -> dict[str, Any]:
        """GET one resource; any non-success answer becomes a classified FetchFailure.

        ``read_only``: BC may answer from its read-only replica, which spares the client's
        database; a page that writes when it opens must be read without it."""
        return await self._send(
            environment,
            "GET",
            url,
            params=params,
            company_scoped=company_scoped,
            read_only=read_only,
            allowance=allowance,
        )

    async def batch(
        self, environment: Environment, requests: list[BatchRequest], allowance: JsonAllowance | None = None
    ) -> dict[str, BatchAnswer]:
        """Several GETs in one round trip (OData JSON ``$batch``, at most 100 requests)."""
        if len(requests) > MAX_BATCH_REQUESTS:
            raise ValueError(f"a $batch takes at most {MAX_BATCH_REQUESTS} requests")
        document = await self._send(
            environment,
            "POST",
            f"{self.root(environment)}/$batch",
            json_body={
                "requests": [
                    {
                        "id": r.id,
                        "method": "GET",
                        "url": r.relative_url,
                        "headers": r.headers(),
                    }
                    for r in requests
                ]
            },
            company_scoped=False,
            weight=len(requests),
            allowance=allowance,
        )
        responses = document.get("responses")
        if not isinstance(responses, list):
            raise FetchFailure(FailureKind.BAD_RESPONSE, message="a $batch answer without responses")
        requested = {r.id for r in requests}
        answers: dict[str, BatchAnswer] = {}
        for item in responses:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                raise FetchFailure(FailureKind.BAD_RESPONSE, message="a $batch response without an id")
            response_id = item["id"]
            # Answers are matched to requests by id: one the hub never sent, or one
            # answered twice, would leave to chance which answer a request gets. (Only
            # ids the hub sent are named in a message: tenant input stays out of them.)
            if response_id not in requested:
                raise FetchFailure(FailureKind.BAD_RESPONSE, message="a $batch response to no request sent")
            if response_id in answers:
                raise FetchFailure(
                    FailureKind.BAD_RESPONSE, message=f"$batch answered {response_id[:50]!r} more than once"
                )
            status = item.get("status")
            body = item.get("body")
            raw_headers = item.get("headers")
            headers: dict[str, Any] = raw_headers if isinstance(raw_headers, dict) else {}
            answers[response_id] = BatchAnswer(
                status=status if isinstance(status, int) else 0,
                headers={str(k).lower(): str(v) for k, v in headers.items()},
                body=body if isinstance(body, dict) else None,
            )
        missing = requested - set(answers)
        if missing:
            raise FetchFailure(FailureKind.BAD_RESPONSE, message=f"$batch answers missing for {sorted(missing)}")
        return answers

    async def batch_collections(
        self, environment: Environment, requests: list[BatchRequest]
    ) -> dict[str, list[dict[str, Any]]]:
        """Collections read through one $batch, each followed through its next links."""
        return (await self.read_batch(environment, requests)).collections

    async def read_batch(self, environment: Environment, requests: list[BatchRequest]) -> BatchRead:
        """Like ``batch_collections``, with the permanent failures of optional reads kept
        apart instead of failing the whole read. Each collection's next pages share one JSON
        allowance (the $batch's answer, holding every first page, has its own): a company
        with hundreds of thousands of customers reads as before, and no collection's pages
        add up to more than one answer may hold."""
        answers = await self.batch(environment, requests)
        read = BatchRead(collections={}, failures={})
        for request in requests:
            try:
                read.collections[request.id] = await self._collection(environment, answers[request.id], JsonAllowance())
            except FetchFailure as failure:
                # An optional read BC fails inside is done without, as one it refuses: the
                # same page may fail alike at every try, and the rest of the read stands.
                if not request.optional or (failure.transient and not failure.server_error):
                    raise
                read.failures[request.id] = failure
        return read

    async def _collection(
        self, environment: Environment, answer: BatchAnswer, allowance: JsonAllowance
    ) -> list[dict[str, Any]]:
        if answer.status >= 400 or answer.status == 0:
            code, message = _error_fields(answer.body) or (None, None)
            await self._raise_for_error(answer.status, answer.headers, code, message, environment, company_scoped=True)
        page = answer.body
        if not 200 <= answer.status < 300 or page is None:
            # Every request of a $batch reads a collection or an entity: a success without
            # one is not an empty answer (an empty setup would read as no local currency).
            raise FetchFailure(
                FailureKind.BAD_RESPONSE,
                http_status=answer.status,
                message=f"a $batch answer of status {answer.status} where a collection or an entity was expected",
            )
        # Every read of a $batch is of a collection (generalLedgerSetup and
        # companyInformation too): an answer without one is not a record to count.
        value = page.get("value")
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise FetchFailure(FailureKind.BAD_RESPONSE, message="a collection without a value list")
        entities = list(value)
        link = page.get("@odata.nextLink")
        if isinstance(link, str):
            # Relative to the $batch's own URL, as the requests in it are.
            next_url = self._next_link(link, f"{self.root(environment)}/$batch")
            entities.extend(await self.get_collection(environment, next_url, allowance=allowance))
        return entities

    async def _raise_for_error(
        self,
        status: int,
        headers: Mapping[str, str],
        code: str | None,
        message: str | None,
        environment: Environment,
        *,
        company_scoped: bool,
    ) -> NoReturn:
        kind = classify_bc_error(status, code, message, company_scoped=company_scoped)
        if kind is FailureKind.CREDENTIALS_REJECTED:
            self._tokens.forget(environment.tenant)
        correlation = correlation_from_message(message) or headers.get("ms-correlation-x") or headers.get("request-id")
        retry_after = parse_retry_after(headers.get("retry-after"))
        if kind is FailureKind.THROTTLED:
            # BC throttles the identity, not one refresh: every read of the tenant waits. A
            # 503's Retry-After (an environment being upgraded) is about that environment
            # only: it delays this read's retry, not the tenant's other environments.
            await self._limiter.hold_off(environment.tenant, retry_after or THROTTLED_HOLD_OFF_SECONDS)
        raise FetchFailure(
            kind,
            http_status=status,
            bc_error_code=code,
            message=message,
            correlation_id=correlation,
            retry_after_seconds=retry_after,
        )

    async def get_collection(
        self,
        environment: Environment,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        company_scoped: bool = True,
        read_only: bool = True,
        allowance: JsonAllowance | None = None,
    ) -> list[dict[str, Any]]:
        """All entities of a collection, following server-driven paging (``read_only`` as
        for ``get_json``); its pages share ``allowance`` (by default, one answer's).

        A next link to a page already read would repeat it forever: a bad answer at once.
        """
        if allowance is None:
            allowance = JsonAllowance()
        pages_read: set[str] = set()
        entities: list[dict[str, Any]] = []
        next_url: str | None = url
        next_params = params
        for _ in range(MAX_PAGES):
            if next_url is None:
                return entities
            page_url = httpx.URL(next_url)
            pages_read.add(str(page_url.copy_merge_params(next_params) if next_params else page_url))
            page = await self.get_json(
                environment,
                next_url,
                params=next_params,
                company_scoped=company_scoped,
                read_only=read_only,
                allowance=allowance,
            )
            value = page.get("value")
            if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
                raise FetchFailure(FailureKind.BAD_RESPONSE, message="a collection without a value list")
            entities.extend(value)
            link = page.get("@odata.nextLink")
            next_url = self._next_link(link, str(page_url)) if isinstance(link, str) else None
            if next_url is not None and next_url in pages_read:
                raise FetchFailure(
                    FailureKind.BAD_RESPONSE,
                    message=f"@odata.nextLink names a page already read, after {len(pages_read)} pages: "
                    f"{urlsplit(next_url).path}",
                )
            # The next link already carries the query options.
            next_params = None
        raise FetchFailure(FailureKind.BAD_RESPONSE, message=f"more than {MAX_PAGES} pages")
