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

# Every firm's answers: the firm is checked against the asking principal's, per answer.
TESTED_SUBJECTS = event_subject("*", ConnectionTested.event_type)
# Answers kept for a request that asks just after its answer arrived, and for quick polls.
RECENT_ANSWERS = 256


class Heard(NamedTuple):
    firm_id: uuid.UUID
    answer: ConnectionTested


class ConnectionTestAnswers:
    def __init__(self, nats: Client) -> None:
        self._nats = nats
        self._waiting: dict[uuid.UUID, list[asyncio.Future[Heard]]] = {}
        self._recent: OrderedDict[uuid.UUID, Heard] = OrderedDict()
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
        heard = self._recent.get(test_id)
        if heard is None or heard.firm_id != firm_id:
            return None
        return heard.answer

    async def wait(self, firm_id: uuid.UUID, test_id: uuid.UUID, timeout: float) -> ConnectionTested | None:
        """The firm's answer to a test, or None if none arrives within ``timeout`` seconds."""
        answer = self.recent(firm_id, test_id)
        if answer is not None:
            return answer
        future: asyncio.Future[Heard] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(test_id, []).append(future)
        try:
            heard = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None
        finally:
            futures = self._waiting.get(test_id, [])
            if future in futures:
                futures.remove(future)
            if not futures:
                self._waiting.pop(test_id, None)
        # A test id is a random UUID the registry made for this firm; checked all the same.
        return heard.answer if heard.firm_id == firm_id else None

    async def _heard(self, msg: Msg) -> None:
        try:
            envelope = decode_event(msg.data)
        except InvalidEvent:
            logger.warning("malformed connection test answer ignored", subject=msg.subject)
            return
        if not isinstance(envelope.data, ConnectionTested):
            return
        heard = Heard(envelope.firm_id, envelope.data)
        test_id = envelope.data.test_id
        self._recent[test_id] = heard
        self._recent.move_to_end(test_id)
        while len(self._recent) > RECENT_ANSWERS:
            self._recent.popitem(last=False)
        for future in self._waiting.get(test_id, []):
            if not future.done():
                future.set_result(heard)
