"""How large a request body the gateway reads: FastAPI parses a JSON body before any route
checks who is asking, so without a limit anyone could make it hold hundreds of megabytes.

A declared Content-Length over the limit is refused before the request reaches a route; a
body sent without one (chunked) is counted as it is read, and whatever the route answers once
it is over the limit is replaced by the refusal (an answer the route had already begun is cut
short instead: one request has one answer). The refusal is the API's usual JSON error in
the caller's language (Starlette's RequestBodyLimitMiddleware answers in plain text, and the
error it raises into a route reaches FastAPI's body parsing wrapped, which answers 400).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette import status
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub_common.i18n import N_
from hub_gateway.languages import LocalizedHTTPException, localized_http_exception_handler


class BodyTooLarge(LocalizedHTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(
            status.HTTP_413_CONTENT_TOO_LARGE,
            N_("The request is larger than this address accepts (at most %(kib)s KiB)"),
            values={"kib": limit // 1024},
        )


class BodySizeLimit:
    """Refuses (413) a request body over ``limit`` bytes, or over the larger limit of the
    path prefix it is sent to (``larger``)."""

    def __init__(self, app: ASGIApp, *, limit: int, larger: Mapping[str, int]) -> None:
        self.app = app
        self.limit = limit
        self.larger = dict(larger)

    def limit_for(self, path: str) -> int:
        return next((limit for prefix, limit in self.larger.items() if path.startswith(prefix)), self.limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, limit)
            return
        received = 0
        exceeded = False
        answered = False
        # Whether the route's own answer has begun: past that the refusal cannot be sent (a
        # second http.response.start is an ASGI error), so the answer is cut short instead.
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge(limit)
            return message

        async def answer(message: Message) -> None:
            nonlocal answered, started
            if message["type"] == "http.response.start":
                if exceeded:
                    answered = True
                    await self._refuse(scope, receive, send, limit)
                    return
                started = True
            if not answered:
                await send(message)

        try:
            await self.app(scope, limited_receive, answer)
        except Exception:
            if not exceeded or answered or started:
                raise
            await self._refuse(scope, receive, send, limit)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = await localized_http_exception_handler(Request(scope), BodyTooLarge(limit))
        await response(scope, receive, send)
