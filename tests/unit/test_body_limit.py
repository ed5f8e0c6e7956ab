"""A body that goes over the limit after the route has begun its answer: the answer is cut
short (the error raised), never followed by a second http.response.start, which the ASGI
server refuses with a RuntimeError of its own."""

from __future__ import annotations

import pytest
from starlette.types import Message, Receive, Scope, Send

from hub_gateway.body_limit import BodySizeLimit, BodyTooLarge


async def _answers_before_reading(scope: Scope, receive: Receive, send: Send) -> None:
    """A streaming route: its answer begins, then it reads the body."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    while (await receive()).get("more_body", False):
        pass


async def test_a_limit_tripped_after_the_answer_began_sends_no_second_start() -> None:
    chunks: list[Message] = [
        {"type": "http.request", "body": b"x" * 600, "more_body": True},
        {"type": "http.request", "body": b"x" * 600, "more_body": False},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return chunks.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    limited = BodySizeLimit(_answers_before_reading, limit=1000, larger={})
    scope: Scope = {"type": "http", "method": "POST", "path": "/stream", "headers": [], "query_string": b""}
    with pytest.raises(BodyTooLarge):
        await limited(scope, receive, send)
    assert [message["type"] for message in sent] == ["http.response.start"]
