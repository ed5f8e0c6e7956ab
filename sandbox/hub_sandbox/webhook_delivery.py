"""BC's webhook calls to subscribers: the validation handshake and the notification POSTs.

One ``httpx.AsyncClient`` for the process, opened and closed with the app's lifespan. It
verifies TLS with the default trust (a subscriber on the internet), and plain http works,
which is what a hub under test on ``http://127.0.0.1:<port>`` needs. The delivery loop runs
as a background task: it wakes often, sends what is due on the sandbox clock and never
holds a request up. Each call has the webhook timeout for the whole of it, as BC's 5 s for
a handshake (httpx's own timeouts are per step: a subscriber that trickles its answer
would pass them).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import secrets
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from hub_common.logging import get_logger
from hub_sandbox.clock import SandboxClock
from hub_sandbox.webhooks import Delivery, HandshakeAttempt, Outcome, SubscriptionRefused, Webhooks

log = get_logger(__name__)

# How often the delivery loop looks for closed waits and due retries.
POLL_SECONDS = 0.1


def _with_validation_token(url: str, token: str) -> str:
    split = urlsplit(url)
    query = f"{split.query}&" if split.query else ""
    return urlunsplit(split._replace(query=query + urlencode({"validationToken": token})))


class WebhookCourier:
    """Makes BC's calls to notification URLs; started and stopped with the app."""

    def __init__(self, webhooks: Webhooks, clock: SandboxClock) -> None:
        self.webhooks = webhooks
        self.clock = clock
        self._http: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        # Attempts under way, by delivery id: a slow subscriber holds up only its own POST.
        self._attempts: dict[int, asyncio.Task[None]] = {}

    async def start(self) -> None:
        timeout = self.webhooks.settings.timeout_seconds
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=False)
        self._task = asyncio.create_task(self._deliver_forever(), name="sandbox-webhook-delivery")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for attempt in list(self._attempts.values()):
            attempt.cancel()
        await asyncio.gather(*self._attempts.values(), return_exceptions=True)
        self._attempts.clear()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeError("the webhook courier is not started (the app's lifespan did not run)")
        return self._http

    async def _call(self, url: str, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        """One POST to a subscriber, answer read, within the webhook timeout in all."""
        async with asyncio.timeout(self.webhooks.settings.timeout_seconds):
            return await self._client().post(url, content=content, headers=headers)

    # -- handshake ----------------------------------------------------------------------

    async def validate(self, notification_url: str, purpose: str) -> None:
        """POST ``notificationUrl?validationToken=...`` with an empty body; the subscriber
        must answer 200 with exactly the token, within the webhook timeout. Raises
        :class:`SubscriptionRefused` (400) otherwise."""
        token = secrets.token_urlsafe(24)
        status: int | None = None
        error: str | None = None
        try:
            response = await self._call(_with_validation_token(notification_url, token), b"")
            status = response.status_code
            if status != 200:
                error = f"it answered {status} instead of 200"
            elif response.text != token:
                error = "its answer was not the validation token"
        except (httpx.TimeoutException, TimeoutError):
            error = f"it timed out after {self.webhooks.settings.timeout_seconds:g} s"
        except httpx.HTTPError as failure:
            error = f"it could not be reached ({type(failure).__name__}: {failure})"
        self.webhooks.handshake_log.append(
            HandshakeAttempt(notification_url, purpose, self.clock.now(), status, error, error is None)
        )
        if error is not None:
            log.info("webhook handshake failed", url=notification_url, purpose=purpose, error=error)
            raise SubscriptionRefused(f"The notification URL '{notification_url}' did not validate: {error}.")

    # -- notifications ------------------------------------------------------------------

    async def _deliver_forever(self) -> None:
        while True:
            try:
                await self.deliver_due()
            except Exception:  # the loop must outlive any one bad delivery
                log.exception("webhook delivery round failed")
            await asyncio.sleep(POLL_SECONDS)

    async def deliver_due(self) -> None:
        """Start an attempt for each delivery that is due and not already being sent."""
        for delivery in self.webhooks.due_deliveries(self.clock.now()):
            if delivery.id not in self._attempts:
                attempt = asyncio.create_task(self._attempt(delivery), name=f"sandbox-webhook-{delivery.id}")
                self._attempts[delivery.id] = attempt
                attempt.add_done_callback(functools.partial(self._finished, delivery.id))

    def _finished(self, delivery_id: int, _: asyncio.Task[None]) -> None:
        self._attempts.pop(delivery_id, None)

    async def _attempt(self, delivery: Delivery) -> None:
        try:
            await self._send(delivery)
        except Exception:  # one bad delivery must not end the others
            log.exception("webhook delivery failed", url=delivery.url)

    async def _send(self, delivery: Delivery) -> None:
        body = self.webhooks.body_of(delivery, self.clock.now())
        if not body["value"]:
            self.webhooks.drop(delivery, self.clock.now())
            return
        status, error = await self._post(delivery.url, body)
        outcome = self.webhooks.settle(delivery, body, status, error, self.clock.now())
        if outcome != Outcome.DELIVERED:
            log.info(
                "webhook notification not delivered", url=delivery.url, status=status, error=error, outcome=outcome
            )

    async def _post(self, url: str, body: dict[str, Any]) -> tuple[int | None, str | None]:
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            response = await self._call(url, content, {"Content-Type": "application/json"})
        except (httpx.TimeoutException, TimeoutError):
            return None, f"timed out after {self.webhooks.settings.timeout_seconds:g} s"
        except httpx.HTTPError as failure:
            return None, f"{type(failure).__name__}: {failure}"
        return response.status_code, None
