"""Business Central API v2.0 stand-in: ``/v2.0/{tenant}/{environment}/api/v2.0/...``.

What a request goes through, in BC's order:

1. the bearer token must verify (signature, lifetime, audience, role) and its ``tid`` must be
   the tenant in the path (GUID or domain), else 401 ``Authentication_InvalidCredentials``;
   the tenant-less form ``/v2.0/{environment}/api/v2.0/...`` takes the token's tenant;
2. the environment must exist in that tenant, else 404 ``NoEnvironment``;
3. the resource path is resolved (``companies``, ``companies({id})``,
   ``companies({id})/{entitySet}[({id})]`` or ``{entitySet}?company={id}``) and the OData
   query options are applied.

Every response carries one correlation id, in the ``ms-correlation-x`` and ``request-id``
headers, and on errors also at the end of the message:
``{"error":{"code":...,"message":"...  CorrelationId:  <guid>."}}``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response

from hub_common.logging import get_logger
from hub_sandbox.entities import (
    COMPANY,
    COMPANY_ENTITY_SETS,
    CompanyEntitySet,
    company_entity_records,
    company_record,
    etag_for,
)
from hub_sandbox.odata import (
    EntityType,
    ODataQueryError,
    QueryOptions,
    Record,
    apply_query,
    parse_query_options,
    serialise,
)
from hub_sandbox.state import SandboxState
from hub_sandbox.tenants import SandboxCompany, SandboxEnvironment, SandboxTenant
from hub_sandbox.tokens import InvalidAccessToken

log = get_logger(__name__)

API_SEGMENTS = ("api", "v2.0")
ODATA_JSON = "application/json; odata.metadata=minimal; odata.streaming=true"
CORRELATION_HEADERS = ("ms-correlation-x", "request-id")


class BusinessCentralError(Exception):
    """An error BC answers with ``{"error":{"code","message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def invalid_credentials() -> BusinessCentralError:
    return BusinessCentralError(
        401, "Authentication_InvalidCredentials", "The server has rejected the client credentials."
    )


def not_found(message: str) -> BusinessCentralError:
    return BusinessCentralError(404, "BadRequest_NotFound", message)


# ---------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One resource path segment: ``accounts`` or ``companies(4f0c...)``."""

    name: str
    key: str | None


@dataclass(frozen=True)
class ApiPath:
    tenant: str | None  # as written in the URL; None in the tenant-less form
    environment: str
    resource: tuple[Segment, ...]

    @property
    def root(self) -> str:
        """The path of the API root, as the client wrote it (for @odata.context)."""
        prefix = f"{self.tenant}/{self.environment}" if self.tenant else self.environment
        return f"/v2.0/{prefix}/api/v2.0"


_SEGMENT = re.compile(r"^(?P<name>[A-Za-z$][A-Za-z0-9_$.]*)(?:\((?P<key>[^()]*)\))?$")


def parse_api_path(path: str) -> ApiPath | None:
    """Split what follows ``/v2.0/``; None when it is not an API v2.0 URL."""
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 3 and tuple(parts[1:3]) == API_SEGMENTS:
        tenant, environment, rest = None, parts[0], parts[3:]
    elif len(parts) >= 4 and tuple(parts[2:4]) == API_SEGMENTS:
        tenant, environment, rest = parts[0], parts[1], parts[4:]
    else:
        return None
    segments = []
    for part in rest:
        match = _SEGMENT.match(part)
        if match is None:
            raise BusinessCentralError(400, "BadRequest", "Bad Request - Error in query syntax.")
        segments.append(Segment(match["name"], match["key"]))
    return ApiPath(tenant, environment, tuple(segments))


def parse_key(key: str) -> uuid.UUID:
    """GUID keys are unquoted in BC URLs; tolerate quotes and braces."""
    text = key.strip().strip("'").strip("{}")
    try:
        return uuid.UUID(text)
    except ValueError:
        raise BusinessCentralError(400, "BadRequest", "Bad Request - Error in query syntax.") from None


# ---------------------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiResult:
    """A JSON body ready to send, without the correlation headers."""

    body: dict[str, Any]


class BusinessCentralApi:
    """Resolves one request to a JSON body or a :class:`BusinessCentralError`."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def handle(
        self,
        *,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        authorization: str | None,
        base_url: str,
        full_url: str,
    ) -> ApiResult:
        api_path = parse_api_path(path)
        tenant = self._authenticate(authorization, api_path)
        if api_path is None:
            raise not_found(f"No HTTP resource was found that matches the request URI '{full_url}'.")
        environment = tenant.environment(api_path.environment)
        if environment is None:
            raise BusinessCentralError(404, "NoEnvironment", "Environment does not exist.")
        if method != "GET":
            last = api_path.resource[-1].name if api_path.resource else "api"
            raise BusinessCentralError(
                405,
                "BadRequest_MethodNotAllowed",
                f"'{method}' requests for '{last}' are not allowed by the sandbox.",
            )
        context_root = f"{base_url}{api_path.root}/$metadata"
        return self._resolve(api_path, environment, query, context_root)

    def _authenticate(self, authorization: str | None, api_path: ApiPath | None) -> SandboxTenant:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            log.info("bc request refused", reason="no bearer token")
            raise invalid_credentials()
        try:
            claims = self.state.token_issuer.verify_for_business_central(token.strip())
        except InvalidAccessToken as error:
            log.info("bc request refused", reason=str(error))
            raise invalid_credentials() from None
        reference = api_path.tenant if api_path and api_path.tenant else str(claims.tenant_id)
        tenant = self.state.catalogue.find(reference)
        if tenant is None or tenant.id != claims.tenant_id:
            log.info("bc request refused", reason="token is for another tenant", tenant=reference)
            raise invalid_credentials()
        return tenant

    def _resolve(
        self,
        api_path: ApiPath,
        environment: SandboxEnvironment,
        query: Sequence[tuple[str, str]],
        context_root: str,
    ) -> ApiResult:
        resource = api_path.resource
        if not resource:
            return ApiResult(_service_document(context_root))
        first = resource[0]
        if first.name == "companies":
            if first.key is None:
                if len(resource) > 1:
                    raise _segment_not_found(resource[1].name)
                # BC's Company table is keyed by Name, so that is the listing's order.
                companies = [company_record(c) for c in sorted(environment.companies, key=lambda c: c.name)]
                return _collection(COMPANY, companies, query, f"{context_root}#companies")
            company = _company_by_id(environment, parse_key(first.key))
            if len(resource) == 1:
                return _single(COMPANY, company_record(company), query, f"{context_root}#companies")
            if len(resource) > 2:
                # Navigation beyond an entity (accounts({id})/...) is not served yet.
                raise _segment_not_found(resource[2].name)
            entity_segment = resource[1]
            context = f"{context_root}#companies({company.id})/{entity_segment.name}"
        else:
            # The {entitySet}?company={id} form.
            entity_segment = first
            if len(resource) > 1:
                raise _segment_not_found(resource[1].name)
            company = self._company_from_query(environment, query, entity_segment.name)
            context = f"{context_root}#{entity_segment.name}"

        entity_set = COMPANY_ENTITY_SETS.get(entity_segment.name)
        if entity_set is None:
            raise _segment_not_found(entity_segment.name)
        records = company_entity_records(entity_set, company, self.state.business_date())
        if entity_segment.key is None:
            return _collection(entity_set.entity, records, query, context)
        return _single(
            entity_set.entity, _record_by_id(entity_set, records, entity_segment.key), query, context
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


def _record_by_id(entity_set: CompanyEntitySet, records: list[Record], key: str) -> Record:
    wanted = parse_key(key)
    record = next((r for r in records if r.get("id") == wanted), None)
    if record is None:
        raise not_found(
            f"The {entity_set.entity.name} does not exist. Identification fields and values: Id='{wanted}'"
        )
    return record


def _options(entity: EntityType, query: Sequence[tuple[str, str]]) -> QueryOptions:
    try:
        return parse_query_options(entity, query)
    except ODataQueryError as error:
        raise BusinessCentralError(400, "BadRequest", error.message) from None


def _collection(
    entity: EntityType, records: list[Record], query: Sequence[tuple[str, str]], context: str
) -> ApiResult:
    options = _options(entity, query)
    if options.select is not None:
        context = f"{context}({','.join(options.select)})"
    value = [
        {"@odata.etag": etag_for(record), **serialise(entity, record, options.select)}
        for record in apply_query(records, options)
    ]
    return ApiResult({"@odata.context": context, "value": value})


def _single(entity: EntityType, record: Record, query: Sequence[tuple[str, str]], context: str) -> ApiResult:
    options = _options(entity, query)
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


# ---------------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------------


def business_central_router(state: SandboxState) -> APIRouter:
    router = APIRouter(tags=["Business Central"])
    api = BusinessCentralApi(state)

    @router.api_route("/v2.0/{api_path:path}", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
    async def business_central(api_path: str, request: Request) -> Response:
        correlation_id = str(uuid.uuid4())
        headers = {name: correlation_id for name in CORRELATION_HEADERS} | {"OData-Version": "4.0"}
        try:
            result = api.handle(
                method=request.method,
                path=api_path,
                query=request.query_params.multi_items(),
                authorization=request.headers.get("authorization"),
                base_url=str(request.base_url).rstrip("/"),
                full_url=str(request.url),
            )
        except BusinessCentralError as error:
            body: dict[str, Any] = {
                "error": {
                    "code": error.code,
                    "message": f"{error.message}  CorrelationId:  {correlation_id}.",
                }
            }
            return _json(body, error.status, headers)
        return _json(result.body, 200, headers)

    return router


def _json(body: dict[str, Any], status: int, headers: dict[str, str]) -> Response:
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(content, status_code=status, headers=headers, media_type=ODATA_JSON)
