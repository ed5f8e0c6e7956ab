"""Test Client URL answers, heard from the ConnectionTested event itself.

A person waits on Test Client URL for seconds, sometimes many at once. Polling the read
model for the answer held a database connection per waiting request and starved the pool
(and with it the projection). Instead every gateway replica listens on core NATS to the
ConnectionTested events as they are published (the stream stores them; a core
subscription hears the same messages, nothing is acknowledged) and hands each to the
request waiting for its test id. The read model stays the answer for a later poll, and
for a test whose event this replica did not hear (it started on another replica, or the
connection was briefly down).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import OrderedDict
from typing import NamedTuple

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from hub_common.events import ConnectionTested, InvalidEvent, decode_event
from hub_common.logging import get_logger
from hub_common.streams import event_subject

logger = get_logger(__name__)

# Every firm's answers; each is kept under its firm and handed out only within it.
TESTED_SUBJECTS = event_subject("*", ConnectionTested.event_type)
# Answers kept for a request that asks just after its answer arrived, and for quick polls.
RECENT_ANSWERS = 256


class FirmTestId(NamedTuple):
    """A test id with the firm whose test it is: an answer is handed out only within its firm."""

    firm_id: uuid.UUID
    test_id: uuid.UUID


class ConnectionTestAnswers:
    def __init__(self, nats: Client) -> None:
        self._nats = nats
        self._waiting: dict[FirmTestId, list[asyncio.Future[ConnectionTested]]] = {}
        self._recent: OrderedDict[FirmTestId, ConnectionTested] = OrderedDict()
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._subscription = await self._nats.subscribe(TESTED_SUBJECTS, cb=self._heard)

    async def stop(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
        for futures in self._waiting.values():
            for future in futures:
                future.cancel()

    def recent(self, firm_id: uuid.UUID, test_id: uuid.UUID) -> ConnectionTested | None:
        """The answer if this replica heard it lately and it is this firm's test."""
        return self._recent.get(FirmTestId(firm_id, test_id))

    async def wait(self, firm_id: uuid.UUID, test_id: uuid.UUID, timeout: float) -> ConnectionTested | None:
        """The firm's answer to a test, or None if none arrives within ``timeout`` seconds."""
        key = FirmTestId(firm_id, test_id)
        answer = self._recent.get(key)
        if answer is not None:
            return answer
        future: asyncio.Future[ConnectionTested] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None
        finally:
            futures = self._waiting.get(key, [])
            if future in futures:
                futures.remove(future)
            if not futures:
                self._waiting.pop(key, None)

    async def _heard(self, msg: Msg) -> None:
        try:
            envelope = decode_event(msg.data, subject=msg.subject)
        except InvalidEvent:
            logger.warning("malformed connection test answer ignored", subject=msg.subject)
            return
        if not isinstance(envelope.data, ConnectionTested):
            return
        key = FirmTestId(envelope.firm_id, envelope.data.test_id)
        self._recent[key] = envelope.data
        self._recent.move_to_end(key)
        while len(self._recent) > RECENT_ANSWERS:
            self._recent.popitem(last=False)
        for future in self._waiting.get(key, []):
            if not future.done():
                future.set_result(envelope.data)
