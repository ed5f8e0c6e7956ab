"""Business Central stand-in under ``/v2.0/``: API v2.0, its JSON ``$batch``, its webhook
``subscriptions`` (:mod:`hub_sandbox.subscriptions`), the runtime API's
``webhookSupportedResources`` and the ODataV4 web services (``Company`` and the Accountant
Portal cues).

What a request goes through, in BC's order:

1. the bearer token must verify (signature, lifetime, audience, role) and its ``tid`` must be
   the tenant in the path (GUID or domain), else 401 ``Authentication_InvalidCredentials``;
   the tenant-less forms ``/v2.0/{environment}/api/v2.0/...`` take the token's tenant;
2. the environment must exist in that tenant, else 404 ``NoEnvironment``;
3. the tenant's faults (admin API) and BC's per-identity limits apply (:mod:`limits`);
4. the resource path is resolved (``companies``, ``companies({id})``,
   ``companies({id})/{entitySet}[({key})]`` or ``{entitySet}?company={id}``), the OData
   query options are applied and the result is paged (``Prefer: odata.maxpagesize``,
   ``@odata.nextLink`` with a ``$skiptoken``).

Every response carries one correlation id, in the ``ms-correlation-x`` and ``request-id``
headers, and on errors also at the end of the message:
``{"error":{"code":...,"message":"...  CorrelationId:  <guid>."}}``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fnmatch
import gzip
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from hub_common.logging import get_logger
from hub_sandbox.cues import CUE_SERVICES, ODATA_COMPANY, cue_record, odata_company_record
from hub_sandbox.entities import (
    COMPANY,
    COMPANY_ENTITY_SETS,
    CompanyEntitySet,
    company_entity_records,
    company_record,
    etag_for,
)
from hub_sandbox.faults import FaultKind
from hub_sandbox.languages import ENGLISH, answer_language, localise
from hub_sandbox.limits import TOO_MANY_REQUESTS_CODE, Identity, Throttled
from hub_sandbox.odata import (
    EdmType,
    EntityType,
    ODataQueryError,
    Property,
    QueryOptions,
    Record,
    apply_query,
    parse_query_options,
    serialise,
)
from hub_sandbox.state import SandboxState
from hub_sandbox.subscriptions import SUBSCRIPTIONS, SubscriptionRequest, SubscriptionsApi
from hub_sandbox.tenants import SandboxCompany, SandboxEnvironment, SandboxTenant
from hub_sandbox.tokens import APP_ROLE, AccessTokenClaims, InvalidAccessToken
from hub_sandbox.webhook_delivery import WebhookCourier
from hub_sandbox.webhooks import WEBHOOK_ENTITY_SETS, SubscriptionRefused

log = get_logger(__name__)

ODATA_JSON = "application/json; odata.metadata=minimal; odata.streaming=true"
CORRELATION_HEADERS = ("ms-correlation-x", "request-id")
API = "api"
ODATA_V4 = "ODataV4"
# BC's runtime API (publisher microsoft, group runtime, version beta): webhook discovery.
RUNTIME = "runtime"
RUNTIME_ROOT = ("microsoft", "runtime", "beta")
BATCH_SEGMENT = "$batch"
# Characters left as they are in the URLs the sandbox writes (keys, $options, quotes).
URL_SAFE = "$(),'"
# BC's words when an operation fails inside it; only a later try tells whether it passes.
SERVER_ERROR_MESSAGE = (
    "Something went wrong. An error occurred and the transaction is stopped. "
    "Contact your administrator or partner for further assistance."
)


class BusinessCentralError(Exception):
    """An error BC answers with ``{"error":{"code","message"}}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def invalid_credentials() -> BusinessCentralError:
    return BusinessCentralError(
        401, "Authentication_InvalidCredentials", "The server has rejected the client credentials."
    )


def not_found(message: str) -> BusinessCentralError:
    return BusinessCentralError(404, "BadRequest_NotFound", message)


def no_resource(url: str) -> BusinessCentralError:
    return not_found(f"No HTTP resource was found that matches the request URI '{url}'.")


def bad_request(message: str) -> BusinessCentralError:
    return BusinessCentralError(400, "BadRequest", message)


# ---------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One resource path segment: ``accounts`` or ``companies(4f0c...)``."""

    name: str
    key: str | None


@dataclass(frozen=True)
class BcPath:
    """What follows ``/v2.0/``: tenant (None in the tenant-less form), environment, which
    service (``api`` for API v2.0, ``ODataV4``) and the segments after the service root."""

    tenant: str | None
    environment: str
    service: str
    rest: tuple[str, ...]

    @property
    def root(self) -> str:
        """The service root's path, as the client wrote it."""
        prefix = f"{self.tenant}/{self.environment}" if self.tenant else self.environment
        if self.service == RUNTIME:
            return f"/v2.0/{prefix}/api/{'/'.join(RUNTIME_ROOT)}"
        return f"/v2.0/{prefix}/api/v2.0" if self.service == API else f"/v2.0/{prefix}/{ODATA_V4}"

    @property
    def is_batch(self) -> bool:
        return self.service == API and self.rest == (BATCH_SEGMENT,)

    @property
    def addressed(self) -> str:
        """The entity set or web service the request names last (``$batch`` for a batch),
        which a fault's ``entity_set`` narrows it to."""
        return self.rest[-1].split("(", 1)[0] if self.rest else self.service


def parse_bc_path(path: str) -> BcPath | None:
    """Split what follows ``/v2.0/``; None when it is neither API v2.0 nor ODataV4.

    ``path`` is as sent, still percent-encoded: it is split on "/" first and each segment
    decoded after, so a company named "CRONUS A/S" (``Company('CRONUS%20A%2FS')``) stays one
    segment, as it does in BC.
    """
    parts = [unquote(part) for part in path.split("/") if part]
    for prefix_length in (2, 1):
        if len(parts) > prefix_length:
            head = parts[prefix_length]
            tenant = parts[0] if prefix_length == 2 else None
            environment = parts[prefix_length - 1]
            if head == API and parts[prefix_length + 1 : prefix_length + 2] == ["v2.0"]:
                return BcPath(tenant, environment, API, tuple(parts[prefix_length + 2 :]))
            if head == API and tuple(parts[prefix_length + 1 : prefix_length + 4]) == RUNTIME_ROOT:
                return BcPath(tenant, environment, RUNTIME, tuple(parts[prefix_length + 4 :]))
            if head == ODATA_V4:
                return BcPath(tenant, environment, ODATA_V4, tuple(parts[prefix_length + 1 :]))
    return None


_SEGMENT = re.compile(r"^(?P<name>[A-Za-z$][A-Za-z0-9_$.]*)(?:\((?P<key>[^()]*)\))?$")


def parse_segments(rest: Sequence[str]) -> tuple[Segment, ...]:
    segments = []
    for part in rest:
        match = _SEGMENT.match(part)
        if match is None:
            raise bad_request("Bad Request - Error in query syntax.")
        segments.append(Segment(match["name"], match["key"]))
    return tuple(segments)


def parse_key(key: str) -> uuid.UUID:
    """GUID keys are unquoted in BC URLs; tolerate quotes and braces."""
    text = key.strip().strip("'").strip("{}")
    try:
        return uuid.UUID(text)
    except ValueError:
        raise bad_request("Bad Request - Error in query syntax.") from None


# ---------------------------------------------------------------------------------------
# Paging
# ---------------------------------------------------------------------------------------

_MAX_PAGE_SIZE = re.compile(r"(?:^|[,;\s])odata\.maxpagesize\s*=\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Paging:
    """How to page one collection: the page size and where the next page lives."""

    page_size: int
    requested: int | None  # from Prefer: odata.maxpagesize, when the client sent one
    # Absolute URL of this request without $skiptoken; the nextLink adds one.
    url: str
    query: tuple[tuple[str, str], ...]

    def next_link(self, offset: int) -> str:
        kept = [(name, value) for name, value in self.query if name.lower() != "$skiptoken"]
        kept.append(("$skiptoken", encode_skip_token(offset)))
        return f"{self.url}?{urlencode(kept, quote_via=quote, safe=URL_SAFE)}"


def requested_page_size(prefer: str | None) -> int | None:
    match = _MAX_PAGE_SIZE.search(prefer or "")
    return int(match.group(1)) if match else None


def encode_skip_token(offset: int) -> str:
    # Opaque to clients, as BC's are; they must follow nextLink, not build tokens.
    return base64.urlsafe_b64encode(f"skip:{offset}".encode()).decode().rstrip("=")


def decode_skip_token(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        text = ""
    kind, _, number = text.partition(":")
    if kind != "skip" or not number.isdigit():
        raise bad_request(f"The skip token value '{token}' is invalid.")
    return int(number)


# ---------------------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------------------


@dataclass
class ApiResult:
    """A JSON body ready to send, and the headers it needs (besides correlation ids)."""

    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ApiGet:
    """One GET under the API or ODataV4 root, already authenticated."""

    tenant: SandboxTenant
    environment: SandboxEnvironment
    path: BcPath
    query: tuple[tuple[str, str], ...]
    prefer: str | None
    base_url: str  # https://host:port
    # Data-Access-Intent: ReadOnly (BC may answer from a read-only replica of the database).
    read_only: bool = False

    @property
    def url(self) -> str:
        rest = "/".join(quote(part, safe=URL_SAFE) for part in self.path.rest)
        return f"{self.base_url}{quote(self.path.root)}/{rest}"


class BusinessCentralApi:
    """Resolves requests to JSON bodies or :class:`BusinessCentralError` (no web framework)."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        # HUB_SANDBOX_MEMOIZE_ANSWERS: answers computed once, for benchmarks.
        self._remembered: dict[tuple[object, ...], ApiResult] = {}
        # Cue records a cue page made while the cue_record_missing fault was on (tenant,
        # environment, company, page): each page has its own, and one made stays.
        self._cue_records_made: set[tuple[uuid.UUID, str, uuid.UUID, str]] = set()

    def _memo_key(self, request: ApiGet) -> tuple[object, ...] | None:
        if not self.state.settings.sandbox_memoize_answers or self.state.faults.of_tenant(request.tenant.id):
            return None  # faults apply to each request as it comes
        return (
            request.tenant.id,
            request.environment.name,
            request.path,
            request.query,
            request.prefer,
            request.base_url,
            self.state.business_date(),
            self.state.bc_version(request.tenant),
            # Anything posted through the admin API changes the answers.
            self.state.book_changes.version,
        )

    def remembered(self, request: ApiGet) -> ApiResult | None:
        """The answer computed for the same request before, when answers are memoized."""
        key = self._memo_key(request)
        return self._remembered.get(key) if key is not None else None

    def resolve(self, request: ApiGet) -> ApiResult:
        """One GET under the API v2.0 or ODataV4 root (remembered when answers are memoized)."""
        handlers = {API: self.get, ODATA_V4: self.odata, RUNTIME: self.runtime}
        handler = handlers[request.path.service]
        key = self._memo_key(request)
        if key is None:
            return handler(request)
        result = self._remembered.get(key)
        if result is None:
            result = handler(request)
            self._remembered[key] = result
        return result

    # -- who and where ------------------------------------------------------------------

    def authenticate(
        self, authorization: str | None, tenant_reference: str | None
    ) -> tuple[SandboxTenant, AccessTokenClaims]:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            log.info("bc request refused", reason="no bearer token")
            raise invalid_credentials()
        try:
            claims = self.state.token_issuer.verify_for_business_central(token.strip())
        except InvalidAccessToken as error:
            log.info("bc request refused", reason=str(error))
            raise invalid_credentials() from None
        reference = tenant_reference or str(claims.tenant_id)
        tenant = self.state.catalogue.find(reference)
        if tenant is None or tenant.id != claims.tenant_id:
            log.info("bc request refused", reason="token is for another tenant", tenant=reference)
            raise invalid_credentials()
        if self.state.faults.take(tenant.id, FaultKind.INVALID_CREDENTIALS):
            raise invalid_credentials()
        if APP_ROLE in claims.roles and not self.state.is_consented(tenant):
            # The tenant took its consent back: the app's tokens issued before no longer
            # get in, and a new one is refused by Entra (AADSTS700016).
            log.info("bc request refused", reason="the app's consent was withdrawn", tenant=reference)
            raise invalid_credentials()
        return tenant, claims

    def environment(self, tenant: SandboxTenant, name: str) -> SandboxEnvironment:
        environment = tenant.environment(name)
        removed = self.state.faults.take(tenant.id, FaultKind.ENVIRONMENT_REMOVED, environment=name)
        if environment is None or removed:
            raise BusinessCentralError(404, "NoEnvironment", "Environment does not exist.")
        return environment

    # -- API v2.0 -----------------------------------------------------------------------

    def get(self, request: ApiGet) -> ApiResult:
        resource = parse_segments(request.path.rest)
        context_root = f"{request.base_url}{request.path.root}/$metadata"
        if not resource:
            return ApiResult(_service_document(context_root))
        first = resource[0]
        environment = request.environment
        if first.name == "companies":
            if first.key is None:
                if len(resource) > 1:
                    raise _segment_not_found(resource[1].name)
                version = self.state.bc_version(request.tenant)
                # BC's Company table is keyed by Name, so that is the listing's order.
                companies = [company_record(c, version) for c in sorted(environment.companies, key=lambda c: c.name)]
                if companies and self.state.faults.take(request.tenant.id, FaultKind.DUPLICATE_COMPANY_IDS):
                    companies.append({**companies[0], "name": f"{companies[0]['name']} (2)"})
                if companies and self.state.faults.take(request.tenant.id, FaultKind.TOO_MANY_COMPANIES):
                    companies += [
                        {**companies[0], "id": str(uuid.UUID(int=number)), "name": f"{companies[0]['name']} {number}"}
                        for number in range(1, 1002 - len(companies))
                    ]
                return self._collection(COMPANY, lambda _: companies, request, f"{context_root}#companies")
            company = _company_by_id(environment, parse_key(first.key))
            if len(resource) == 1:
                record = company_record(company, self.state.bc_version(request.tenant))
                return _single(COMPANY, record, _options(COMPANY, request.query), f"{context_root}#companies")
            if len(resource) > 2:
                # Navigation beyond an entity (accounts({id})/...) is not served.
                raise _segment_not_found(resource[2].name)
            entity_segment = resource[1]
            context = f"{context_root}#companies({company.id})/{entity_segment.name}"
        else:
            # The {entitySet}?company={id} form.
            entity_segment = first
            if len(resource) > 1:
                raise _segment_not_found(resource[1].name)
            company = self._company_from_query(environment, request.query, entity_segment.name)
            context = f"{context_root}#{entity_segment.name}"

        entity_set = COMPANY_ENTITY_SETS.get(entity_segment.name)
        if entity_set is None or self.state.faults.take(
            request.tenant.id, FaultKind.ENTITY_NOT_PUBLISHED, entity_set=entity_segment.name
        ):
            raise _segment_not_found(entity_segment.name)
        if self.state.faults.take(request.tenant.id, FaultKind.SERVER_ERROR, entity_set=entity_segment.name):
            raise BusinessCentralError(500, "Internal_ServerError", SERVER_ERROR_MESSAGE)
        self._check_access(request.tenant, company, entity_set.table)
        book = self.state.book(company)
        if entity_segment.key is None:
            return self._collection(
                entity_set.entity,
                lambda options: company_entity_records(entity_set, book, options),
                request,
                context,
            )
        options = _options(entity_set.entity, request.query)
        records = company_entity_records(entity_set, book, options)
        return _single(entity_set.entity, _record_by_key(entity_set, records, entity_segment.key), options, context)

    def _check_access(self, tenant: SandboxTenant, company: SandboxCompany, table: str) -> None:
        if self.state.faults.take(tenant.id, FaultKind.COMPANY_FORBIDDEN, company_id=company.id):
            # As seen from BC (reference §6.2): a 500 whose message alone says a permission
            # is missing, in the language of the answer (hub_sandbox.languages).
            raise BusinessCentralError(
                500,
                "Internal_ServerError",
                f"Sorry, the current permissions prevented the action. (TableData {table} Read: Accountant Hub)",
            )

    def _company_from_query(
        self, environment: SandboxEnvironment, query: Sequence[tuple[str, str]], entity_set: str
    ) -> SandboxCompany:
        if entity_set not in COMPANY_ENTITY_SETS:
            raise _segment_not_found(entity_set)
        reference = next((value for name, value in query if name.lower() == "company"), None)
        if reference is None:
            raise BusinessCentralError(
                400,
                "Internal_CompanyNotFound",
                "Cannot process the request because the default company cannot be found. You"
                " can specify a default company in the service configuration file, or specify"
                " one for each tenant, or you can add a query string in the form of"
                ' "company=[name]". You can see the available companies by accessing the'
                ' default OData web service, Company. For more information, see "OData Web'
                ' Services" in Help.',
            )
        # BC accepts the company's id or its name here.
        try:
            return _company_by_id(environment, uuid.UUID(reference.strip("{}")))
        except ValueError:
            company = environment.company_named(reference)
            if company is None:
                raise _company_not_found(reference) from None
            return company

    def _collection(
        self,
        entity: EntityType,
        records_for: Callable[[QueryOptions], list[Record]],
        request: ApiGet,
        context: str,
    ) -> ApiResult:
        options = _options(entity, request.query)
        records = apply_query(records_for(options), options)
        if options.select is not None:
            context = f"{context}({','.join(options.select)})"
        settings = self.state.settings
        requested = requested_page_size(request.prefer)
        paging = Paging(
            page_size=max(1, min(requested or settings.sandbox_page_size, settings.sandbox_max_page_size)),
            requested=requested,
            url=request.url,
            query=request.query,
        )
        offset = decode_skip_token(options.skip_token) if options.skip_token else 0
        # With $top the client asked for a slice: BC sends no nextLink then (AL issue 6858).
        end = len(records) if options.top is not None else offset + paging.page_size
        page = records[offset:end]
        body: dict[str, Any] = {
            "@odata.context": context,
            "value": [{"@odata.etag": etag_for(r), **serialise(entity, r, options.select)} for r in page],
        }
        if self.state.faults.take(request.tenant.id, FaultKind.REPEATED_NEXT_LINK):
            # The page just served, as its own next page: a client that trusts it loops.
            body["@odata.nextLink"] = paging.next_link(offset)
        elif end < len(records):
            body["@odata.nextLink"] = paging.next_link(end)
        headers = {}
        if requested is not None:
            headers["Preference-Applied"] = f"odata.maxpagesize={paging.page_size}"
        return ApiResult(body, headers)

    # -- api/microsoft/runtime/beta -------------------------------------------------------

    def runtime(self, request: ApiGet) -> ApiResult:
        """``companies({id})/webhookSupportedResources``: the v2.0 entity sets BC notifies
        for, as ``v2.0/{entitySet}``. BC's filter takes a wildcard
        (``resource eq 'v2.0*'``), which plain OData does not; it is applied here."""
        resource = parse_segments(request.path.rest)
        if len(resource) != 2 or resource[0].name != "companies" or resource[0].key is None:
            raise no_resource(request.url)
        if resource[1].name != WEBHOOK_SUPPORTED_RESOURCE.entity_set:
            raise _segment_not_found(resource[1].name)
        company = _company_by_id(request.environment, parse_key(resource[0].key))
        records: list[Record] = [{"resource": f"v2.0/{name}"} for name in sorted(WEBHOOK_ENTITY_SETS)]
        query = list(request.query)
        filter_text = next((value for name, value in query if name == "$filter"), None)
        wildcard = _WILDCARD_FILTER.match(filter_text or "")
        if wildcard is not None:
            records = [r for r in records if fnmatch.fnmatchcase(str(r["resource"]), wildcard["pattern"])]
            query = [(name, value) for name, value in query if name != "$filter"]
        context_root = f"{request.base_url}{request.path.root}/$metadata"
        context = f"{context_root}#companies({company.id})/{WEBHOOK_SUPPORTED_RESOURCE.entity_set}"
        narrowed = ApiGet(
            request.tenant,
            request.environment,
            request.path,
            tuple(query),
            request.prefer,
            request.base_url,
            request.read_only,
        )
        return self._collection(WEBHOOK_SUPPORTED_RESOURCE, lambda _: records, narrowed, context)

    # -- ODataV4 ------------------------------------------------------------------------

    def odata(self, request: ApiGet) -> ApiResult:
        """``Company``, ``Company('{name}')`` and ``Company('{name}')/{CueService}``."""
        rest = request.path.rest
        context_root = f"{request.base_url}{request.path.root}/$metadata"
        match = _ODATA_COMPANY.match(rest[0]) if rest else None
        if match is None or len(rest) > 2:
            raise no_resource(request.url)
        environment = request.environment
        if match["name"] is None:
            if len(rest) > 1:
                raise no_resource(request.url)
            records = [odata_company_record(c) for c in sorted(environment.companies, key=lambda c: c.name)]
            return self._collection(ODATA_COMPANY, lambda _: records, request, f"{context_root}#Company")
        name = match["name"].replace("''", "'")
        company = environment.company_named(name)
        if company is None:
            raise not_found(f"The company '{name}' does not exist.")
        if len(rest) == 1:
            record = odata_company_record(company)
            options = _options(ODATA_COMPANY, request.query)
            return _single(ODATA_COMPANY, record, options, f"{context_root}#Company")
        service = CUE_SERVICES.get(rest[1])
        if service is None or not self.state.cue_services_published(request.tenant):
            # BC 30 no longer publishes Microsoft pages as web services.
            raise no_resource(request.url)
        self._check_access(request.tenant, company, "9069 Activities Cue")
        if self.state.faults.take(request.tenant.id, FaultKind.CUES_WITHOUT_DECIMALS):
            # A BC whose cue pages lack the *Decimal fields refuses a $select that names them.
            select = next((value for name, value in request.query if name == "$select"), "")
            selected = select.split(",")[0] or "CashAccountsBalanceAmountDecimal"
            raise BusinessCentralError(
                400,
                "BadRequest",
                f"Could not find a property named '{selected}' on type 'NAV.{service.name}'.",
            )
        record_key = (request.tenant.id, request.environment.name, company.id, service.name)
        missing = self.state.faults.take(request.tenant.id, FaultKind.CUE_RECORD_MISSING, company_id=company.id)
        if missing is not None and record_key not in self._cue_records_made:
            if request.read_only:
                raise BusinessCentralError(
                    500,
                    "Internal_ServerError",
                    f"The page could not insert its {service.name} record: the database is read-only.",
                )
            # The page inserted its record as it opened: that record is there from now on.
            self._cue_records_made.add(record_key)
        book = self.state.book(company)
        record = cue_record(service.name, book)
        context = f"{context_root}#Company('{quote(company.name)}')/{service.name}"
        return self._collection(service, lambda _: [record], request, context)

    # -- $batch -------------------------------------------------------------------------

    def batch(
        self,
        tenant: SandboxTenant,
        environment: SandboxEnvironment,
        path: BcPath,
        identity: Identity,
        body: bytes,
        base_url: str,
        accept_language: str | None,
    ) -> ApiResult:
        """OData JSON batch: ``{"requests":[{"id","method","url","headers"}]}`` answered
        with ``{"responses":[{"id","status","headers","body"}]}``. Every operation counts
        toward the rate window on its own; each is answered even when others fail."""
        try:
            document = json.loads(body)
            operations = document["requests"]
            if not isinstance(operations, list) or not all(isinstance(op, dict) for op in operations):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise bad_request("The batch request body is not a valid OData JSON batch.") from None
        limit = self.state.settings.sandbox_max_batch_requests
        if len(operations) > limit:
            raise bad_request(f"The batch request has {len(operations)} operations; the maximum is {limit}.")
        return ApiResult(
            {
                "responses": [
                    self._operation(tenant, environment, path, identity, op, base_url, accept_language)
                    for op in operations
                ]
            }
        )

    def _operation(
        self,
        tenant: SandboxTenant,
        environment: SandboxEnvironment,
        batch_path: BcPath,
        identity: Identity,
        operation: dict[str, Any],
        base_url: str,
        batch_accept_language: str | None,
    ) -> dict[str, Any]:
        operation_id = str(operation.get("id", ""))
        correlation_id = str(uuid.uuid4())
        headers = {name: correlation_id for name in CORRELATION_HEADERS} | {"odata-version": "4.0"}
        raw_headers = operation.get("headers")
        inner_headers = (
            {str(k).lower(): str(v) for k, v in raw_headers.items()} if isinstance(raw_headers, dict) else {}
        )
        language = answer_language(
            inner_headers.get("accept-language") or batch_accept_language, tenant.locale.language
        )
        try:
            self.state.limiter.count_request(identity)
            method = str(operation.get("method", "GET")).upper()
            path, query = _operation_target(str(operation.get("url", "")), batch_path)
            if method != "GET":
                raise BusinessCentralError(
                    405, "BadRequest_MethodNotAllowed", f"'{method}' requests are not allowed by the sandbox."
                )
            if path.service != API or path.environment.casefold() != environment.name.casefold():
                raise bad_request("A batch operation must address the API root of the batch.")
            request = ApiGet(tenant, environment, path, query, inner_headers.get("prefer"), base_url)
            result = self.resolve(request)
            status, body = 200, result.body
            headers |= result.headers | {"content-type": ODATA_JSON}
        except Throttled as throttled:
            status, body = (
                throttled.status,
                _error_body(TOO_MANY_REQUESTS_CODE, throttled.message, correlation_id, language),
            )
            if throttled.retry_after is not None:
                headers["retry-after"] = str(throttled.retry_after)
        except BusinessCentralError as error:
            status, body = error.status, _error_body(error.code, error.message, correlation_id, language)
            headers |= {k.lower(): v for k, v in error.headers.items()}
        return {"id": operation_id, "status": status, "headers": headers, "body": body}


_WILDCARD_FILTER = re.compile(r"^\s*resource\s+eq\s+'(?P<pattern>[^']*\*[^']*)'\s*$")

WEBHOOK_SUPPORTED_RESOURCE = EntityType(
    name="webhookSupportedResource",
    entity_set="webhookSupportedResources",
    key="resource",
    properties=(Property("resource", EdmType.STRING),),
)

_ODATA_COMPANY = re.compile(r"^Company(?:\('(?P<name>(?:[^']|'')*)'\))?$")


def _operation_target(url: str, batch_path: BcPath) -> tuple[BcPath, tuple[tuple[str, str], ...]]:
    """A batch operation's URL: relative to the API root, or absolute / root-relative."""
    split = urlsplit(url)
    query = tuple(parse_qsl(split.query, keep_blank_values=True))
    path_text = split.path
    if split.scheme or path_text.startswith("/"):
        marker = "/v2.0/"
        if marker not in path_text:
            raise bad_request(f"The batch operation URL '{url}' is not under the API root.")
        parsed = parse_bc_path(path_text.split(marker, 1)[1])
        if parsed is None:
            raise bad_request(f"The batch operation URL '{url}' is not under the API root.")
        return parsed, query
    rest = tuple(unquote(part) for part in path_text.split("/") if part)
    return BcPath(batch_path.tenant, batch_path.environment, API, rest), query


def _company_by_id(environment: SandboxEnvironment, company_id: uuid.UUID) -> SandboxCompany:
    company = environment.company(company_id)
    if company is None:
        raise _company_not_found(str(company_id))
    return company


def _company_not_found(reference: str) -> BusinessCentralError:
    # BC's exact text for an unknown company id is not documented; this keeps its code.
    return not_found(f"The company '{reference}' does not exist.")


def _segment_not_found(name: str) -> BusinessCentralError:
    return not_found(f"Resource not found for the segment '{name}'.")


def _record_by_key(entity_set: CompanyEntitySet, records: list[Record], key: str) -> Record:
    wanted = parse_key(key)
    key_name = entity_set.entity.key
    record = next((r for r in records if r.get(key_name) == wanted), None)
    if record is None:
        raise not_found(f"The {entity_set.entity.name} does not exist. Identification fields and values: Id='{wanted}'")
    return record


def _options(entity: EntityType, query: Sequence[tuple[str, str]]) -> QueryOptions:
    try:
        return parse_query_options(entity, query)
    except ODataQueryError as error:
        raise bad_request(error.message) from None


def _single(entity: EntityType, record: Record, options: QueryOptions, context: str) -> ApiResult:
    body = {
        "@odata.context": f"{context}/$entity",
        "@odata.etag": etag_for(record),
        **serialise(entity, record, options.select),
    }
    return ApiResult(body)


def _service_document(context_root: str) -> dict[str, Any]:
    names = ["companies", *COMPANY_ENTITY_SETS]
    return {
        "@odata.context": context_root,
        "value": [{"name": name, "kind": "EntitySet", "url": name} for name in names],
    }


def _error_body(code: str, message: str, correlation_id: str, language: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": f"{localise(message, language)}  CorrelationId:  {correlation_id}."}}


# ---------------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------------


def subscription_segment(path: BcPath) -> Segment | None:
    """``subscriptions`` or ``subscriptions('{id}')`` right under the API v2.0 root."""
    if path.service != API or len(path.rest) != 1:
        return None
    segment = parse_segments(path.rest)[0]
    return segment if segment.name == SUBSCRIPTIONS else None


def _allowed_methods(path: BcPath, subscription: Segment | None) -> tuple[str, ...]:
    if subscription is not None:
        return ("GET", "POST") if subscription.key is None else ("GET", "PATCH", "DELETE")
    return ("POST",) if path.is_batch else ("GET",)


def business_central_router(state: SandboxState, courier: WebhookCourier) -> APIRouter:
    router = APIRouter(tags=["Business Central"])
    api = BusinessCentralApi(state)
    subscriptions = SubscriptionsApi(state.webhooks, courier, state.clock)

    @router.api_route("/v2.0/{bc_path:path}", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
    async def business_central(bc_path: str, request: Request) -> Response:
        correlation_id = str(uuid.uuid4())
        headers = {name: correlation_id for name in CORRELATION_HEADERS} | {"OData-Version": "4.0"}
        tenant: SandboxTenant | None = None
        accept_language = request.headers.get("accept-language")
        accepts_gzip = _accepts_gzip(request.headers.get("accept-encoding"))

        def language(tenant: SandboxTenant | None) -> str:
            return answer_language(accept_language, tenant.locale.language if tenant else ENGLISH)

        try:
            raw_path = request.scope.get("raw_path", b"").decode("latin-1")
            path = parse_bc_path(raw_path.split("/v2.0/", 1)[1] if "/v2.0/" in raw_path else bc_path)
            tenant, claims = api.authenticate(request.headers.get("authorization"), path.tenant if path else None)
            if path is None:
                raise no_resource(str(request.url))
            environment = api.environment(tenant, path.environment)
            _raise_front_door_faults(state, tenant, path)
            subscription = subscription_segment(path)
            if request.method not in _allowed_methods(path, subscription):
                last = path.rest[-1] if path.rest else path.service
                raise BusinessCentralError(
                    405,
                    "BadRequest_MethodNotAllowed",
                    f"'{request.method}' requests for '{last}' are not allowed by the sandbox.",
                )
            body = await request.body() if request.method in ("POST", "PATCH") else b""
            identity = (tenant.id, claims.app_id)
            await state.limiter.acquire(identity)
            try:
                if not path.is_batch:
                    state.limiter.count_request(identity)
                await _slow_down(state, tenant, request, path)
                base_url = str(request.base_url).rstrip("/")
                if subscription is not None:
                    answer = await subscriptions.handle(
                        SubscriptionRequest(
                            tenant, environment, claims.app_id, claims.object_id, request.method, subscription.key,
                            body, request.headers.get("if-match"), f"{base_url}{path.root}",
                        )
                    )  # fmt: skip
                    if answer.body is None:
                        return Response(status_code=answer.status, headers=headers | answer.headers)
                    # Body faults (malformed, oversized, trickled) apply as to every BC answer.
                    return _answer(
                        state, tenant, ApiResult(answer.body, answer.headers), headers, answer.status,
                        accepts_gzip=accepts_gzip,
                    )  # fmt: skip
                if path.is_batch:
                    result = await run_in_threadpool(
                        api.batch, tenant, environment, path, identity, body, base_url, accept_language
                    )
                else:
                    get = ApiGet(
                        tenant, environment, path, tuple(request.query_params.multi_items()),
                        request.headers.get("prefer"), base_url,
                        (request.headers.get("data-access-intent") or "").casefold() == "readonly",
                    )  # fmt: skip
                    remembered = api.remembered(get)
                    result = remembered if remembered is not None else await run_in_threadpool(api.resolve, get)
            finally:
                state.limiter.release(identity)
        except Throttled as throttled:
            body_json = _error_body(TOO_MANY_REQUESTS_CODE, throttled.message, correlation_id, language(tenant))
            waits = {} if throttled.retry_after is None else {"Retry-After": str(throttled.retry_after)}
            return _json(body_json, throttled.status, headers | waits)
        except BusinessCentralError as error:
            body_json = _error_body(error.code, error.message, correlation_id, language(tenant))
            return _json(body_json, error.status, headers | error.headers)
        except SubscriptionRefused as refused:
            body_json = _error_body(refused.code, refused.message, correlation_id, language(tenant))
            return _json(body_json, refused.status, headers)
        return _answer(state, tenant, result, headers, accepts_gzip=accepts_gzip)

    return router


def _raise_front_door_faults(state: SandboxState, tenant: SandboxTenant, path: BcPath) -> None:
    """Faults that answer before a request reaches the service: upgrading, throttled."""
    upgrading = state.faults.take(tenant.id, FaultKind.UPGRADING, entity_set=path.addressed)
    if upgrading:
        raise BusinessCentralError(
            503,
            "ServiceUnavailable",
            "Service is under maintenance. The environment is being updated; try again later.",
            {"Retry-After": str(upgrading.retry_after_seconds)},
        )
    throttled = state.faults.take(tenant.id, FaultKind.TOO_MANY_REQUESTS, entity_set=path.addressed)
    if throttled:
        state.limiter.note_throttled(tenant.id)
        retry_after = throttled.retry_after_seconds if throttled.send_retry_after else None
        raise Throttled(429, "Too many requests reached for this user.", retry_after)


async def _slow_down(state: SandboxState, tenant: SandboxTenant, request: Request, path: BcPath) -> None:
    """Global and per-tenant latency, and the timeout fault: all hold the request's slot,
    as a slow BC does."""
    latency_ms = state.settings.sandbox_latency_ms
    latency = state.faults.take(tenant.id, FaultKind.LATENCY, entity_set=path.addressed)
    if latency:
        latency_ms += latency.latency_ms
    if latency_ms:
        await asyncio.sleep(latency_ms / 1000)
    timeout = state.faults.take(tenant.id, FaultKind.TIMEOUT, entity_set=path.addressed)
    if timeout:
        deadline = time.monotonic() + timeout.timeout_seconds
        # Polling is the only way to notice a client that hangs up mid-request.
        while time.monotonic() < deadline and not await request.is_disconnected():  # noqa: ASYNC110
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        # Not documented (reference §6.1 gives only the status): the sandbox's code.
        raise BusinessCentralError(504, "GatewayTimeout", "The request timed out before BC answered.")


def _answer(
    state: SandboxState,
    tenant: SandboxTenant | None,
    result: ApiResult,
    headers: dict[str, str],
    status: int = 200,
    *,
    accepts_gzip: bool,
) -> Response:
    headers = headers | result.headers
    if tenant is not None and state.faults.take(tenant.id, FaultKind.MALFORMED_BODY):
        content = json.dumps(result.body, separators=(",", ":")).encode()
        # Cut in the middle and drop the closing brackets: a body that is not JSON.
        return Response(content[: max(1, len(content) // 2)], status, headers=headers, media_type=ODATA_JSON)
    oversized = state.faults.take(tenant.id, FaultKind.OVERSIZED_BODY) if tenant is not None else None
    if oversized:
        return StreamingResponse(
            _huge_body(oversized.size_mb * 1024 * 1024), status, headers=headers, media_type=ODATA_JSON
        )
    trickle = state.faults.take(tenant.id, FaultKind.TRICKLE) if tenant is not None else None
    if trickle:
        content = json.dumps(result.body, ensure_ascii=False, separators=(",", ":")).encode()
        return StreamingResponse(
            _trickled(content, trickle.trickle_interval_seconds), status, headers=headers, media_type=ODATA_JSON
        )
    content = json.dumps(result.body, ensure_ascii=False, separators=(",", ":")).encode()
    minimum = state.settings.sandbox_gzip_min_bytes
    if accepts_gzip and minimum and len(content) >= minimum:
        compressed = gzip.compress(content, compresslevel=GZIP_LEVEL)
        headers = headers | {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
        return Response(compressed, status_code=status, headers=headers, media_type=ODATA_JSON)
    return Response(content, status_code=status, headers=headers, media_type=ODATA_JSON)


# Fast rather than small: the sandbox's CPU per answer bounds what a benchmark can show.
GZIP_LEVEL = 1


def _accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether the request's Accept-Encoding takes gzip (not refused with q=0)."""
    for coding in (accept_encoding or "").split(","):
        name, _, parameters = coding.partition(";")
        if name.strip().lower() in ("gzip", "*"):
            quality = parameters.strip().lower().removeprefix("q=")
            try:
                return not parameters.strip() or float(quality) > 0
            except ValueError:
                return False
    return False


async def _trickled(content: bytes, interval_seconds: float) -> AsyncIterator[bytes]:
    """The whole answer, a byte at a time: each read gets data well within any read timeout,
    so only a client's deadline for the whole answer ends it."""
    for index in range(len(content)):
        yield content[index : index + 1]
        await asyncio.sleep(interval_seconds)


async def _huge_body(size: int) -> AsyncIterator[bytes]:
    """Valid-looking JSON, streamed: a collection of padding records of about ``size`` bytes."""
    record = json.dumps(
        {"@odata.etag": 'W/"JzE5OzEyMzQ1Njc4OTAxMjM0NTY3ODkwMTE7MDA7Jw=="', "id": str(uuid.UUID(int=1)),
         "number": "99999", "displayName": "Padding " + "x" * 200, "netChange": 0}
    ).encode()  # fmt: skip
    chunk = b",".join([record] * 256) + b","
    yield b'{"@odata.context":"$metadata#accounts","value":['
    sent = 0
    while sent < size:
        yield chunk
        sent += len(chunk)
        await asyncio.sleep(0)
    yield record + b"]}"


def _json(body: dict[str, Any], status: int, headers: dict[str, str]) -> Response:
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(content, status_code=status, headers=headers, media_type=ODATA_JSON)
