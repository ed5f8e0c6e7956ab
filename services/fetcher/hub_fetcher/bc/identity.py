"""App-only tokens for each client tenant, through msal's ConfidentialClientApplication.

One msal app per tenant authority lives as long as the process, so its token cache is
reused until the token nears expiry. msal is synchronous: every call runs in a worker
thread of the provider's own pool, sized so that every refresh in flight can wait for a
token at once.

msal's HTTP calls (OIDC discovery, the token request) do not use a client of their own:
``EventLoopHttpClient`` hands each one to the process's single ``httpx.AsyncClient`` on the
event loop, under a total deadline (connect + the whole answer), and waits for it in the
worker thread. So a token endpoint that trickles its answer ends as a timeout, the CA
bundle is the one every call trusts (this machine's REQUESTS_CA_BUNDLE would silently
override msal's own ``verify=``), and every answer Entra gives is seen by the hub, which
is how a failure is classified from what Entra said, not from msal's exception text.
"""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import msal
import msal.exceptions

from hub_common.entra import confidential_client
from hub_common.events import FailureKind
from hub_common.retry_after import parse_retry_after
from hub_fetcher.bc.failures import FetchFailure, Service, classify_token_error

BC_SCOPE = "https://api.businesscentral.dynamics.com/.default"
# Entra's answers are small documents; anything larger is not one of them.
MAX_ENTRA_ANSWER_BYTES = 1024 * 1024
TOO_MANY_REQUESTS = 429


@dataclass(frozen=True)
class EntraAnswer:
    """What Entra last answered on one thread: enough to say what went wrong."""

    url: str
    status: int
    body: bytes
    # When Entra throttles (429) or is down (503): when it says to ask again.
    retry_after: str | None = None

    def json_document(self) -> dict[str, Any] | None:
        try:
            document = json.loads(self.body)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, too deep, an integer too long
            return None
        return document if isinstance(document, dict) else None

    @property
    def is_discovery(self) -> bool:
        return "/.well-known/openid-configuration" in self.url


class EventLoopHttpClient(httpx.Client):
    """The ``http_client`` msal calls from a worker thread; each request runs on the loop.

    httpx builds the request (query, form body, headers) exactly as it would for msal; only
    sending is replaced, so its own connection pool is never used.
    """

    def __init__(self, http: httpx.AsyncClient, *, deadline_seconds: float) -> None:
        super().__init__()
        self._async_http = http
        self._deadline_seconds = deadline_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_answers = threading.local()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def last_answer(self) -> EntraAnswer | None:
        """The answer of this thread's latest request (msal's calls run on one thread)."""
        answer: EntraAnswer | None = getattr(self._last_answers, "answer", None)
        return answer

    def forget_last_answer(self) -> None:
        self._last_answers.answer = None

    def send(self, request: httpx.Request, **_: Any) -> httpx.Response:
        if self._loop is None:
            raise RuntimeError("the token client is not bound to an event loop")
        future = asyncio.run_coroutine_threadsafe(self._send_with_deadline(request), self._loop)
        response = future.result()
        self._last_answers.answer = EntraAnswer(
            str(request.url), response.status_code, response.content, response.headers.get("retry-after")
        )
        return response

    async def _send_with_deadline(self, request: httpx.Request) -> httpx.Response:
        try:
            async with asyncio.timeout(self._deadline_seconds):
                response = await self._async_http.send(request, stream=True)
                try:
                    body = await _read_capped(response)
                finally:
                    await response.aclose()
        except TimeoutError as error:
            raise FetchFailure(
                FailureKind.TIMEOUT,
                service=Service.ENTRA,
                message=f"no complete answer from Microsoft Entra ID within {self._deadline_seconds:g} s "
                f"({request.url.path}; HUB_ENTRA_REQUEST_DEADLINE_SECONDS)",
            ) from error
        except httpx.HTTPError as error:
            raise FetchFailure(
                FailureKind.TIMEOUT,
                service=Service.ENTRA,
                message=f"Microsoft Entra ID could not be reached: {type(error).__name__}: {error}",
            ) from error
        # The body is decoded already: headers about its transfer encoding no longer apply.
        headers = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(response.status_code, headers=headers, content=body, request=request)


async def _read_capped(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_ENTRA_ANSWER_BYTES:
            raise FetchFailure(
                FailureKind.BAD_RESPONSE,
                service=Service.ENTRA,
                http_status=response.status_code,
                message=f"an answer from Microsoft Entra ID larger than {MAX_ENTRA_ANSWER_BYTES} bytes",
            )
        chunks.append(chunk)
    return b"".join(chunks)


class TokenProvider:
    def __init__(
        self,
        *,
        authority_base: str,
        client_id: str,
        client_secret: str | dict[str, str],
        http: httpx.AsyncClient,
        deadline_seconds: float,
        threads: int,
    ) -> None:
        self._authority_base = authority_base.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._http = EventLoopHttpClient(http, deadline_seconds=deadline_seconds)
        # Read and written from token threads and the event loop without a lock: each step
        # is one dict operation. msal's constructor asks Entra (OIDC discovery) through the
        # event loop, so no lock the loop could wait on may be held around it.
        self._apps: dict[str, msal.ConfidentialClientApplication] = {}
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="msal")

    def _app(self, tenant: str) -> msal.ConfidentialClientApplication:
        app = self._apps.get(tenant)
        if app is None:
            made = confidential_client(
                authority_base=self._authority_base,
                tenant=tenant,
                client_id=self._client_id,
                client_secret=self._client_secret,
                http=self._http,
            )
            # Two threads may make one for the same tenant at once; both then use the first.
            app = self._apps.setdefault(tenant, made)
        return app

    def _drop_app(self, tenant: str) -> None:
        self._apps.pop(tenant, None)

    def _acquire(self, tenant: str) -> str:
        self._http.forget_last_answer()
        try:
            app = self._app(tenant)
            result: dict[str, Any] = app.acquire_token_for_client(scopes=[BC_SCOPE])
        except FetchFailure:
            self._drop_app(tenant)
            raise
        except (ValueError, KeyError, httpx.HTTPStatusError, msal.exceptions.MsalError) as error:
            # msal raises these for a discovery that failed, an answer that is not JSON or
            # lacks a field, and a 5xx (MsalServiceError from its throttling wrapper); what
            # Entra actually answered tells which it was. A new app object also forgets the
            # error msal would otherwise replay to the next call without asking Entra.
            self._drop_app(tenant)
            raise self._failure_from_answer(error) from error
        token = result.get("access_token")
        if isinstance(token, str) and token:
            return token
        # msal replays a recent error answer for the same app object; a fresh one asks again.
        self._drop_app(tenant)
        error_name = result.get("error")
        description = result.get("error_description")
        codes = [code for code in result.get("error_codes", []) if isinstance(code, int)]
        last = self._http.last_answer()
        if last is not None and last.status == TOO_MANY_REQUESTS:
            raise self._throttled(last, description)
        raise FetchFailure(
            classify_token_error(error_name, description, codes),
            service=Service.ENTRA,
            http_status=last.status if last else None,
            bc_error_code=error_name if isinstance(error_name, str) else None,
            message=description if isinstance(description, str) else None,
            correlation_id=result.get("correlation_id"),
        )

    @staticmethod
    def _throttled(answer: EntraAnswer, description: object) -> FetchFailure:
        return FetchFailure(
            FailureKind.THROTTLED,
            service=Service.ENTRA,
            http_status=answer.status,
            message=description if isinstance(description, str) else "Microsoft Entra ID throttled the token request",
            retry_after_seconds=parse_retry_after(answer.retry_after),
        )

    def _failure_from_answer(self, error: Exception) -> FetchFailure:
        answer = self._http.last_answer()
        if answer is None:
            if isinstance(error, msal.exceptions.MsalError):
                # msal gave up without asking Entra (an error it keeps replaying): a passing state.
                return FetchFailure(FailureKind.ENVIRONMENT_OFFLINE, service=Service.ENTRA, message=f"msal: {error}")
            return FetchFailure(FailureKind.BAD_RESPONSE, service=Service.ENTRA, message=f"msal: {error}")
        document = answer.json_document()
        if answer.status == TOO_MANY_REQUESTS:
            description = document.get("error_description") if document else None
            return self._throttled(answer, description)
        if answer.status >= 500:
            return FetchFailure(
                FailureKind.ENVIRONMENT_OFFLINE,
                service=Service.ENTRA,
                http_status=answer.status,
                message=f"Microsoft Entra ID answered {answer.status}: {answer.body[:300].decode(errors='replace')}",
                retry_after_seconds=parse_retry_after(answer.retry_after),
            )
        if answer.is_discovery and 400 <= answer.status < 500:
            # Entra answers an unknown tenant's discovery with 400 invalid_tenant (AADSTS90002).
            error_name = document.get("error") if document else None
            description = document.get("error_description") if document else None
            return FetchFailure(
                FailureKind.TENANT_NOT_FOUND,
                service=Service.ENTRA,
                http_status=answer.status,
                bc_error_code=error_name if isinstance(error_name, str) else None,
                message=description if isinstance(description, str) else f"tenant discovery failed: {error}",
            )
        shown = answer.body[:200].decode(errors="replace")
        what = "not JSON" if document is None else "JSON without the fields an answer must have"
        return FetchFailure(
            FailureKind.BAD_RESPONSE,
            service=Service.ENTRA,
            http_status=answer.status,
            message=f"Microsoft Entra ID answered {what} ({answer.url}): {shown}",
        )

    async def token_for(self, tenant: str) -> str:
        loop = asyncio.get_running_loop()
        self._http.bind(loop)
        return await loop.run_in_executor(self._threads, self._acquire, tenant)

    def forget(self, tenant: str) -> None:
        """Drop a tenant's cached token (BC rejected it), so the next call asks Entra again."""
        self._drop_app(tenant)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._http.close()
