"""The transactional outbox: a state change and its event commit together (invariant 1).

A service writes its rows and ``append``s the event in the same transaction. The relay
then publishes every unsent event in order with ``Nats-Msg-Id`` = the event id and marks
it sent. A crash between commit and publish only delays the event; a crash between
publish and marking re-publishes it with the same id, which JetStream drops as a
duplicate inside its window and which every consumer ignores anyway (invariant 2).

Each row also keeps the trace context it was appended in, so the event leaves in the
trace of the request that caused it, whichever process relays it and however much later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry.trace import SpanKind
from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub_common.bus import PublishFailed, publish_event
from hub_common.db import UtcDateTime
from hub_common.events import Envelope, decode_event
from hub_common.logging import get_logger
from hub_common.tracing import current_context_headers, span_continuing

logger = get_logger(__name__)


def outbox_table(metadata: MetaData, name: str) -> Table:
    return Table(
        name,
        metadata,
        # The position orders events as they were committed.
        Column("position", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("event_id", String(36), nullable=False, unique=True),
        Column("event_type", String(100), nullable=False),
        Column("payload", Text, nullable=False),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("published_at", UtcDateTime(), nullable=True, index=True),
        # The W3C trace context (JSON headers) of the transaction that appended the event.
        Column("trace_context", Text, nullable=True),
    )


async def append(session: AsyncSession, table: Table, envelope: Envelope[Any]) -> None:
    """Add an event to the outbox inside the caller's transaction."""
    await session.execute(
        insert(table).values(
            event_id=str(envelope.id),
            event_type=envelope.type,
            payload=envelope.model_dump_json(),
            created_at=datetime.now(UTC),
            trace_context=json.dumps(trace) if (trace := current_context_headers()) else None,
        )
    )


async def backlog(sessions: async_sessionmaker[AsyncSession], table: Table) -> int:
    """How many committed events wait to be published."""
    async with sessions() as session:
        waiting = await session.scalar(select(func.count()).select_from(table).where(table.c.published_at.is_(None)))
    return int(waiting or 0)


class OutboxRelay:
    """Publishes committed events to JetStream, oldest first.

    ``run`` must go on in one process at a time (it runs under the role's lease, see
    hub_common.leadership); ``notify`` may be called in any replica: it wakes the relay of
    whichever replica holds the lease through a core NATS notice, so an event committed
    anywhere leaves at once instead of at the next poll.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        table: Table,
        js: JetStreamContext,
        *,
        nats: Client | None = None,
        poll_seconds: float = 1.0,
        batch_size: int = 100,
        before_publish: Callable[[Envelope[Any]], Awaitable[None]] | None = None,
    ) -> None:
        """``before_publish`` runs for each event, in order, before it is published; if it
        fails, neither that event nor any later one leaves until it succeeds."""
        self._sessions = sessions
        self._before_publish = before_publish
        self._table = table
        self._js = js
        self._nats = nats
        self._poll_seconds = poll_seconds
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self._notices: set[asyncio.Task[None]] = set()
        # Whether ``run`` goes on in this process (this replica holds the lease).
        self._relaying = False

    @property
    def _wake_subject(self) -> str:
        # Core NATS only: no stream listens on ``outbox.>``, so nothing is stored.
        return f"outbox.{self._table.name}.appended"

    def notify(self) -> None:
        """Call after a commit that appended events, so they leave without waiting."""
        self._wake.set()
        # The relay running here has just been woken; only another replica's needs the notice.
        if self._nats is not None and self._nats.is_connected and not self._relaying:
            notice = asyncio.get_running_loop().create_task(self._nats.publish(self._wake_subject, b""))
            self._notices.add(notice)
            notice.add_done_callback(self._notices.discard)

    async def run(self) -> None:
        """Relay until cancelled: at each notice, else every ``poll_seconds``."""
        subscription = None
        if self._nats is not None:

            async def woken(_: Msg) -> None:
                self._wake.set()

            subscription = await self._nats.subscribe(self._wake_subject, cb=woken)
        self._relaying = True
        try:
            await self._relay_forever()
        finally:
            self._relaying = False
            if subscription is not None:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()

    async def _relay_forever(self) -> None:
        while True:
            # Cleared before reading, so a commit that notifies while a batch is out is
            # read at once afterwards, not at the next poll.
            self._wake.clear()
            try:
                sent = await self.relay_once()
            except PublishFailed as error:
                logger.warning("outbox relay waiting for the broker", error=str(error))
                sent = 0
            except Exception:
                logger.exception("outbox relay failed; retrying")
                sent = 0
            if sent < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._poll_seconds)

    async def relay_once(self) -> int:
        """Publish one batch of unsent events; returns how many were sent."""
        table = self._table
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(table.c.position, table.c.payload, table.c.trace_context)
                    .where(table.c.published_at.is_(None))
                    .order_by(table.c.position)
                    .limit(self._batch_size)
                )
            ).all()
        sent = 0
        for position, payload, trace_context in rows:
            envelope = decode_event(payload)
            if self._before_publish is not None:
                await self._before_publish(envelope)
            appended_in = json.loads(trace_context) if trace_context else None
            with span_continuing(f"publish {envelope.type}", appended_in, kind=SpanKind.PRODUCER):
                await publish_event(self._js, envelope)
            async with self._sessions() as session, session.begin():
                await session.execute(
                    update(table).where(table.c.position == position).values(published_at=datetime.now(UTC))
                )
            sent += 1
        return sent
