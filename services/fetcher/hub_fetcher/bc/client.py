"""Reading Business Central's API v2.0 over one pooled httpx.AsyncClient.

Every URL is built from the configured BC host plus validated tenant, environment and
company segments; ``@odata.nextLink`` is followed only when it points back at that host,
so nothing a tenant answers can make the hub call elsewhere (invariant 5).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from hub_common.events import FailureKind
from hub_fetcher.bc.failures import FetchFailure, classify_bc_error, correlation_from_message
from hub_fetcher.bc.identity import TokenProvider
from hub_fetcher.bc.limits import TenantLimiter

API_PATH = "api/v2.0"
MAX_PAGES = 1000


@dataclass(frozen=True)
class Environment:
    tenant: str
    name: str


def _parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class BusinessCentral:
    def __init__(
        self,
        *,
        api_base: str,
        http: httpx.AsyncClient,
        tokens: TokenProvider,
        limiter: TenantLimiter,
        max_response_bytes: int,
    ) -> None:
        self._api_base = api_base.rstrip("/")
        base = urlsplit(self._api_base)
        self._origin = (base.scheme, base.hostname, base.port)
        self._http = http
        self._tokens = tokens
        self._limiter = limiter
        self._max_response_bytes = max_response_bytes
        self.requests_made = 0

    def root(self, environment: Environment) -> str:
        return (
            f"{self._api_base}/v2.0/{quote(environment.tenant, safe='')}/"
            f"{quote(environment.name, safe='')}/{API_PATH}"
        )

    def company_url(self, environment: Environment, company_id: uuid.UUID, entity_set: str) -> str:
        return f"{self.root(environment)}/companies({company_id})/{entity_set}"

    def _same_host(self, url: str) -> bool:
        parts = urlsplit(url)
        return (parts.scheme, parts.hostname, parts.port) == self._origin

    async def _read_capped(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self._max_response_bytes:
            raise FetchFailure(
                FailureKind.BAD_RESPONSE,
                http_status=response.status_code,
                message=f"response of {declared} bytes exceeds the {self._max_response_bytes} byte limit",
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._max_response_bytes:
                raise FetchFailure(
                    FailureKind.BAD_RESPONSE,
                    http_status=response.status_code,
                    message=f"response exceeds the {self._max_response_bytes} byte limit",
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def get_json(
        self,
        environment: Environment,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        company_scoped: bool,
    ) -> dict[str, Any]:
        """GET one resource; any non-success answer becomes a classified FetchFailure."""
        if not self._same_host(url):
            raise FetchFailure(FailureKind.BAD_RESPONSE, message="refused to follow a link to another host")
        token = await self._tokens.token_for(environment.tenant)
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "Data-Access-Intent": "ReadOnly",
        }
        async with self._limiter.slot(environment.tenant):
            self.requests_made += 1
            try:
                async with self._http.stream("GET", url, params=params, headers=headers) as response:
                    body = await self._read_capped(response)
            except httpx.TimeoutException as error:
                raise FetchFailure(
                    FailureKind.TIMEOUT, message=f"{type(error).__name__} after waiting for BC"
                ) from error
            except httpx.HTTPError as error:
                raise FetchFailure(
                    FailureKind.TIMEOUT, message=f"connection to BC failed: {error}"
                ) from error
        if response.status_code >= 400:
            self._raise_for_error(response, body, environment, company_scoped=company_scoped)
        try:
            document = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise FetchFailure(
                FailureKind.BAD_RESPONSE,
                http_status=response.status_code,
                message=f"the answer is not JSON: {error}",
            ) from error
        if not isinstance(document, dict):
            raise FetchFailure(FailureKind.BAD_RESPONSE, message="the answer is not a JSON object")
        return document

    def _raise_for_error(
        self, response: httpx.Response, body: bytes, environment: Environment, *, company_scoped: bool
    ) -> None:
        code: str | None = None
        message: str | None = None
        try:
            error = json.loads(body).get("error", {})
            code = error.get("code") if isinstance(error.get("code"), str) else None
            message = error.get("message") if isinstance(error.get("message"), str) else None
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            message = body[:500].decode(errors="replace") or None
        kind = classify_bc_error(response.status_code, code, message, company_scoped=company_scoped)
        if kind is FailureKind.CREDENTIALS_REJECTED:
            self._tokens.forget(environment.tenant)
        correlation = (
            correlation_from_message(message)
            or response.headers.get("ms-correlation-x")
            or response.headers.get("request-id")
        )
        raise FetchFailure(
            kind,
            http_status=response.status_code,
            bc_error_code=code,
            message=message,
            correlation_id=correlation,
            retry_after_seconds=_parse_retry_after(response.headers.get("retry-after")),
        )

    async def get_collection(
        self,
        environment: Environment,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        company_scoped: bool = True,
    ) -> list[dict[str, Any]]:
        """All entities of a collection, following server-driven paging."""
        entities: list[dict[str, Any]] = []
        next_url: str | None = url
        next_params = params
        for _ in range(MAX_PAGES):
            if next_url is None:
                return entities
            page = await self.get_json(
                environment, next_url, params=next_params, company_scoped=company_scoped
            )
            value = page.get("value")
            if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
                raise FetchFailure(FailureKind.BAD_RESPONSE, message="a collection without a value list")
            entities.extend(value)
            link = page.get("@odata.nextLink")
            next_url = link if isinstance(link, str) else None
            # The next link already carries the query options.
            next_params = None
        raise FetchFailure(FailureKind.BAD_RESPONSE, message=f"more than {MAX_PAGES} pages")


def elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
