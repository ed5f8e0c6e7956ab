"""Running a role's durable pull consumer: decode, handle, then acknowledge explicitly.

FastStream's default (``REJECT_ON_ERROR``) terminates a message on any exception, which
would silently drop work. Here every outcome is explicit:

* handled: ack;
* ``Retry`` or an unexpected exception: nack with a delay that grows per delivery, until
  ``max_deliver`` is reached, then the message goes to the dead-letter stream;
* not a valid hub event: no retry can fix it, so it goes to the dead-letter stream at once.

Concurrency comes from ``PullSub(batch_size=...)`` (one fetch, handled concurrently), never
from ``max_workers`` (FastStream's pull subscriber over-fetches there and redelivers).
Projections use ``batch=True``: one call per fetched batch, applied in stream order.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from hub_common.bus import CORRELATION_HEADER, FIRM_HEADER, jetstream_of
from hub_common.events import Envelope, EventData, InvalidEvent, decode_event
from hub_common.logging import bound_context, get_logger
from hub_common.streams import DEAD_LETTER_SUBJECT_PREFIX, ConsumerSpec

logger = get_logger(__name__)


class Retry(Exception):
    """Raised by a handler for a transient failure: redeliver after ``delay_seconds``."""

    def __init__(self, reason: str, delay_seconds: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay_seconds = delay_seconds


@dataclass(frozen=True)
class Delivery:
    """Where a message sits in its stream and how often it has been delivered."""

    subject: str
    stream: str
    stream_sequence: int
    num_delivered: int
    headers: Mapping[str, str]
    raw: Msg

    @asynccontextmanager
    async def keep_alive(self, every_seconds: float) -> AsyncIterator[None]:
        """Tell JetStream the work is still going, so a slow refresh is not redelivered."""

        async def beat() -> None:
            while True:
                await asyncio.sleep(every_seconds)
                await self.raw.in_progress()

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()


EventHandler = Callable[[Envelope[EventData], Delivery], Awaitable[None]]
BatchHandler = Callable[[list[tuple[Envelope[EventData], Delivery]]], Awaitable[None]]


def _delivery(msg: Msg) -> Delivery:
    metadata = msg.metadata
    return Delivery(
        subject=msg.subject,
        stream=metadata.stream,
        stream_sequence=metadata.sequence.stream,
        num_delivered=metadata.num_delivered,
        headers=dict(msg.headers or {}),
        raw=msg,
    )


def backoff_delay(num_delivered: int) -> float:
    """Seconds before the next delivery: 1, 2, 4 ... capped at 60."""
    return float(min(60, 2 ** max(0, num_delivered - 1)))


async def dead_letter(js: JetStreamContext, spec: ConsumerSpec, delivery: Delivery, payload: bytes, error: str) -> None:
    """Keep a message no handler could take where an operator can see and replay it."""
    try:
        text_payload: dict[str, str] = {"payload": payload.decode()}
    except UnicodeDecodeError:
        text_payload = {"payload_base64": base64.b64encode(payload).decode()}
    record = {
        "consumer": spec.durable,
        "stream": delivery.stream,
        "stream_sequence": delivery.stream_sequence,
        "subject": delivery.subject,
        "num_delivered": delivery.num_delivered,
        "error": error[:2000],
        "dead_lettered_at": datetime.now(UTC).isoformat(),
        "headers": dict(delivery.headers),
        **text_payload,
    }
    await js.publish(
        f"{DEAD_LETTER_SUBJECT_PREFIX}.{spec.durable}",
        json.dumps(record).encode(),
        headers={"Nats-Msg-Id": f"{delivery.stream}:{delivery.stream_sequence}:{spec.durable}"},
    )
    logger.error(
        "message dead-lettered",
        consumer=spec.durable,
        stream_sequence=delivery.stream_sequence,
        error=error[:300],
    )


async def _settle_failure(
    js: JetStreamContext,
    spec: ConsumerSpec,
    delivery: Delivery,
    payload: bytes,
    error: str,
    delay: float | None,
) -> None:
    if delivery.num_delivered >= spec.max_deliver:
        await dead_letter(js, spec, delivery, payload, error)
        await delivery.raw.term()
        return
    wait = delay if delay is not None else backoff_delay(delivery.num_delivered)
    await delivery.raw.nak(delay=wait)


def _log_context(delivery: Delivery) -> dict[str, Any]:
    return {
        "correlation_id": delivery.headers.get(CORRELATION_HEADER),
        "firm_id": delivery.headers.get(FIRM_HEADER),
        "stream_sequence": delivery.stream_sequence,
    }


async def _decode_or_dead_letter(
    js: JetStreamContext, spec: ConsumerSpec, msg: Msg
) -> tuple[Envelope[EventData], Delivery] | None:
    delivery = _delivery(msg)
    try:
        return decode_event(msg.data), delivery
    except InvalidEvent as error:
        # A payload that does not validate never will: retrying only blocks the consumer.
        await dead_letter(js, spec, delivery, msg.data, f"invalid event: {error}")
        await msg.term()
        return None


async def handle_one(js: JetStreamContext, spec: ConsumerSpec, msg: Msg, handler: EventHandler) -> None:
    decoded = await _decode_or_dead_letter(js, spec, msg)
    if decoded is None:
        return
    envelope, delivery = decoded
    with bound_context(_log_context(delivery) | {"event_type": envelope.type}):
        try:
            await handler(envelope, delivery)
        except Retry as retry:
            logger.warning("handler asked for retry", reason=retry.reason)
            await _settle_failure(js, spec, delivery, msg.data, retry.reason, retry.delay_seconds)
            return
        except Exception as error:
            logger.exception("handler failed")
            await _settle_failure(js, spec, delivery, msg.data, repr(error), None)
            return
        await msg.ack()


async def handle_batch(js: JetStreamContext, spec: ConsumerSpec, messages: list[Msg], handler: BatchHandler) -> None:
    decoded = [item for msg in messages if (item := await _decode_or_dead_letter(js, spec, msg))]
    if not decoded:
        return
    try:
        await handler(decoded)
    except Exception:
        # One bad event must not hold the rest back: apply them one by one, so only the
        # failing one is retried and, in the end, dead-lettered.
        logger.warning("batch failed; applying one by one", size=len(decoded))
        for envelope, delivery in decoded:
            with bound_context(_log_context(delivery) | {"event_type": envelope.type}):
                try:
                    await handler([(envelope, delivery)])
                except Exception as error:
                    logger.exception("event failed")
                    await _settle_failure(js, spec, delivery, delivery.raw.data, repr(error), None)
                    continue
                await delivery.raw.ack()
        return
    for _, delivery in decoded:
        await delivery.raw.ack()


def _pull_subscriber(
    broker: NatsBroker, spec: ConsumerSpec, pull_sub: PullSub, title: str
) -> Callable[[Callable[[NatsMessage], Awaitable[None]]], Any]:
    """FastStream's subscriber bound to the role's existing durable, with explicit acks."""
    subscriber: Callable[[Callable[[NatsMessage], Awaitable[None]]], Any] = broker.subscriber(
        spec.filter_subjects[0] if len(spec.filter_subjects) == 1 else "hub.>",
        stream=JStream(spec.stream, declare=False),
        durable=spec.durable,
        pull_sub=pull_sub,
        ack_policy=AckPolicy.MANUAL,
        title=title,
    )
    return subscriber


def subscribe(
    broker: NatsBroker,
    spec: ConsumerSpec,
    handler: EventHandler,
    *,
    concurrency: int,
    title: str,
) -> None:
    """Bind ``handler`` to the role's durable; ``concurrency`` messages are handled at once."""

    @_pull_subscriber(broker, spec, PullSub(batch_size=concurrency, timeout=1.0), title)
    async def consume(message: NatsMessage) -> None:
        await handle_one(jetstream_of(broker), spec, message.raw_message, handler)


def subscribe_batches(
    broker: NatsBroker,
    spec: ConsumerSpec,
    handler: BatchHandler,
    *,
    batch_size: int,
    title: str,
) -> None:
    """Bind a batch handler (a projection) to the role's durable; batches arrive in order."""

    @_pull_subscriber(broker, spec, PullSub(batch_size=batch_size, timeout=0.2, batch=True), title)
    async def consume(message: NatsMessage) -> None:
        raw = message.raw_message
        messages = raw if isinstance(raw, list) else [raw]
        await handle_batch(jetstream_of(broker), spec, messages, handler)
