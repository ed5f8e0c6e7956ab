"""The sandbox's clock: real UTC time plus an offset the admin API can move forward.

Webhook subscriptions expire three days after they are created or renewed, and BC retries
a notification for 36 hours; tests cannot wait that long, so everything that ages
(subscriptions, notification batches, retries, ``lastModifiedDateTime`` of changes made
at run time) reads this clock, and ``PUT /_sandbox/clock`` advances it.
"""

from __future__ import annotations

import datetime as dt
import threading
from email.utils import format_datetime

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class SandboxClock:
    def __init__(self) -> None:
        self._offset = dt.timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        """The sandbox's current UTC time, to the millisecond (BC's datetimes carry
        milliseconds, so a ``gt`` filter on a stamped time compares as the wire shows it)."""
        moment = dt.datetime.now(dt.UTC) + self._offset
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    @property
    def offset(self) -> dt.timedelta:
        return self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            self._offset += dt.timedelta(seconds=seconds)

    def reset(self) -> None:
        with self._lock:
            self._offset = dt.timedelta(0)


class ClockDateHeader:
    """ASGI middleware: every answer's ``Date`` header is the sandbox clock's. Clients judge
    a subscription's expiry on BC's clock (the ``Date`` of its answers), so an advanced
    clock must show there too. (uvicorn's own Date header is turned off.)"""

    def __init__(self, app: ASGIApp, clock: SandboxClock) -> None:
        self.app = app
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                headers.append((b"date", format_datetime(self.clock.now(), usegmt=True).encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_dated)
