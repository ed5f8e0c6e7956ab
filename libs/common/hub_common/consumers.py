"""Running a role's durable pull consumer: decode, handle, then acknowledge explicitly.

FastStream's default (``REJECT_ON_ERROR``) terminates a message on any exception, which
would silently drop work. Here every outcome is explicit:

* handled: ack;
* ``Retry`` or an unexpected exception: nack with a delay that grows per delivery, until
  ``max_deliver`` is reached, then the message goes to the dead-letter stream;
* ``GiveUp``: no retry can fix it (a mail server refused the address), so it goes to the
  dead-letter stream at once, where an operator sees why;
* not a valid hub event: no retry can fix it, so it goes to the dead-letter stream at once;
* a store the handler writes to does not answer (the database is down): nack, then stop
  fetching until it answers again. An outage is no fault of the message, so however long it
  lasts it costs each message about one delivery, never its place in the read model.

Nothing is acknowledged before the handler has returned, that is, before it is stored.

Concurrency comes from ``PullSub(batch_size=...)`` (one fetch, handled concurrently), never
from ``max_workers`` (FastStream's pull subscriber over-fetches there and redelivers).
Projections use ``batch=True``: one call per fetched batch, applied in stream order.

Each event is handled (or projected) in a span that continues the trace its headers carry,
so a refresh asked for on the gateway is one trace through every service it touches.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats.errors
import sqlalchemy.exc
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry.trace import SpanKind

from hub_common.bus import (
    BROKER_UNAVAILABLE,
    CORRELATION_HEADER,
    FIRM_HEADER,
    PublishFailed,
    inbox_prefix,
    jetstream_of,
)
from hub_common.events import Envelope, EventData, InvalidEvent, decode_event
from hub_common.logging import bound_context, get_logger
from hub_common.nats_permissions import owner_of
from hub_common.streams import ConsumerSpec, dead_letter_subject
from hub_common.tracing import context_from, span_continuing, tracer

logger = get_logger(__name__)


class Retry(Exception):
    """Raised by a handler for a transient failure: redeliver after ``delay_seconds``."""

    def __init__(self, reason: str, delay_seconds: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay_seconds = delay_seconds


class GiveUp(Exception):
    """Raised by a handler for a failure no retry can fix: dead-letter the message now."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
                try:
                    await self.raw.in_progress()
                except Exception as error:
                    # The broker is away for a moment: keep beating, so that once it is back
                    # the work is not redelivered to another worker while it is still going.
                    logger.warning("progress report failed", error=repr(error)[:200])

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()
            # Ended before the message is acknowledged, so no late progress report follows the
            # ack; a cancellation of the caller still goes through (wait does not swallow it).
            await asyncio.wait([task])


EventHandler = Callable[[Envelope[EventData], Delivery], Awaitable[None]]
BatchHandler = Callable[[list[tuple[Envelope[EventData], Delivery]]], Awaitable[None]]
# Answers whether the store a handler writes to is reachable again (e.g. ``SELECT 1``).
Probe = Callable[[], Awaitable[bool]]


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


def store_unavailable(error: BaseException) -> bool:
    """Whether a handler failed because its database did not answer, not because of the message."""
    if isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(
        error,
        sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError | sqlalchemy.exc.TimeoutError | OSError,
    )


def broker_unavailable(error: BaseException) -> bool:
    """Whether a handler failed because NATS did not answer (a restart, an election)."""
    return isinstance(error, (*BROKER_UNAVAILABLE, PublishFailed))


# Tries at writing a dead letter, a second apart and more: a broker election or a moment
# without the leader must not lose it (its Nats-Msg-Id makes a repeat one record).
DEAD_LETTER_ATTEMPTS = 4


async def dead_letter(js: JetStreamContext, spec: ConsumerSpec, delivery: Delivery, payload: bytes, error: str) -> None:
    """Keep a message no handler could take where an operator can see and replay it.

    Raises when the broker would not take the record after DEAD_LETTER_ATTEMPTS: the message
    is then left unsettled, so it comes back (its one delivery past the handlers' last) and
    is dead-lettered then (_past_its_last_delivery)."""
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
    body = json.dumps(record).encode()
    failed_attempts = 0
    while True:
        try:
            await js.publish(
                dead_letter_subject(spec.durable, delivery.subject),
                body,
                headers={"Nats-Msg-Id": f"{delivery.stream}:{delivery.stream_sequence}:{spec.durable}"},
            )
            break
        except nats.errors.MaxPayloadError:
            if "payload_omitted" in record:
                raise
            # Escaped as JSON, a message near the broker's size limit no longer fits: the
            # record names where it is instead (the stream keeps it).
            record.pop("payload", None)
            record.pop("payload_base64", None)
            record["payload_omitted"] = "larger than the broker takes: read it at stream_sequence of stream"
            body = json.dumps(record).encode()
        except (nats.errors.Error, TimeoutError) as failure:
            failed_attempts += 1
            if failed_attempts == DEAD_LETTER_ATTEMPTS:
                logger.error(
                    "dead letter not written; the message comes back to be dead-lettered again",
                    consumer=spec.durable,
                    stream=delivery.stream,
                    stream_sequence=delivery.stream_sequence,
                    error=repr(failure)[:300],
                )
                raise
            await asyncio.sleep(0.5 * 2**failed_attempts)
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
    wait = delay if delay is not None else spec.retry_delay(delivery.num_delivered)
    await delivery.raw.nak(delay=wait)


async def _wait_for_store(spec: ConsumerSpec, available: Probe | None, error: BaseException) -> None:
    """Hold this consumer's fetching until the store answers again.

    The messages were nacked already; while this waits, the pull loop fetches nothing, so
    their deliveries are not used up however long the outage lasts.
    """
    logger.warning("store unavailable; pausing the consumer", consumer=spec.durable, error=repr(error)[:300])
    pause = spec.retry_delay_seconds
    if available is None:
        await asyncio.sleep(pause)
        return
    while True:
        await asyncio.sleep(pause)
        if await available():
            logger.info("store available again; resuming the consumer", consumer=spec.durable)
            return
        pause = min(pause * 2, spec.retry_max_delay_seconds)


async def _hold_off(
    js: JetStreamContext,
    spec: ConsumerSpec,
    deliveries: list[Delivery],
    error: BaseException,
    available: Probe | None,
) -> None:
    """Nack what could not be stored (nothing of it is acknowledged), then wait for the store."""
    for delivery in deliveries:
        await _settle_failure(js, spec, delivery, delivery.raw.data, f"store unavailable: {error!r}", None)
    await _wait_for_store(spec, available, error)


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
        return decode_event(msg.data, subject=msg.subject), delivery
    except InvalidEvent as error:
        # A payload that does not validate never will: retrying only blocks the consumer.
        await dead_letter(js, spec, delivery, msg.data, f"invalid event: {error}")
        await msg.term()
        return None


# Why a message came back past the handlers' last delivery (ConsumerSpec.config).
ENDED_WITHOUT_OUTCOME = (
    "its last delivery ended without an outcome (its worker stopped, crashed or ran past the ack wait, "
    "or its dead letter could not be written); not handled again"
)


# How long the delivery past the handlers' last keeps trying to write its dead letter (the
# broker's election, a restart): it is the message's last chance to be kept.
LAST_DEAD_LETTER_SECONDS = 120.0


async def _past_its_last_delivery(js: JetStreamContext, spec: ConsumerSpec, msg: Msg) -> bool:
    """A message back for the delivery the server keeps past the handlers' last: it is
    dead-lettered, unhandled, instead of vanishing. No delivery follows this one, so the
    dead letter is tried for LAST_DEAD_LETTER_SECONDS, the message held meanwhile; should
    the broker take none of it, the log says which message was lost."""
    delivery = _delivery(msg)
    if delivery.num_delivered <= spec.max_deliver:
        return False
    deadline = asyncio.get_running_loop().time() + LAST_DEAD_LETTER_SECONDS
    while True:
        try:
            await dead_letter(js, spec, delivery, msg.data, ENDED_WITHOUT_OUTCOME)
            break
        except Exception as error:
            if asyncio.get_running_loop().time() >= deadline:
                logger.error(
                    "message lost: its last delivery ended without an outcome and no dead letter could be written",
                    consumer=spec.durable,
                    stream=delivery.stream,
                    stream_sequence=delivery.stream_sequence,
                    subject=delivery.subject,
                    error=repr(error)[:300],
                )
                return True
            with contextlib.suppress(Exception):
                await msg.in_progress()
            await asyncio.sleep(5)
    with contextlib.suppress(Exception):
        await msg.term()
    return True


async def handle_one(
    js: JetStreamContext, spec: ConsumerSpec, msg: Msg, handler: EventHandler, *, available: Probe | None = None
) -> None:
    if await _past_its_last_delivery(js, spec, msg):
        return
    decoded = await _decode_or_dead_letter(js, spec, msg)
    if decoded is None:
        return
    envelope, delivery = decoded
    with (
        bound_context(_log_context(delivery) | {"event_type": envelope.type}),
        span_continuing(f"handle {envelope.type}", delivery.headers) as span,
    ):
        span.set_attribute("hub.consumer", spec.durable)
        try:
            await handler(envelope, delivery)
        except Retry as retry:
            logger.warning("handler asked for retry", reason=retry.reason)
            span.set_attribute("hub.retry", retry.reason[:200])
            await _settle_failure(js, spec, delivery, msg.data, retry.reason, retry.delay_seconds)
            return
        except GiveUp as given_up:
            await dead_letter(js, spec, delivery, msg.data, given_up.reason)
            await delivery.raw.term()
            return
        except Exception as error:
            if store_unavailable(error) or broker_unavailable(error):
                await _hold_off(js, spec, [delivery], error, available)
                return
            logger.exception("handler failed")
            await _settle_failure(js, spec, delivery, msg.data, repr(error), None)
            return
        await msg.ack()


async def handle_batch(
    js: JetStreamContext,
    spec: ConsumerSpec,
    messages: list[Msg],
    handler: BatchHandler,
    *,
    available: Probe | None = None,
) -> None:
    current = [msg for msg in messages if not await _past_its_last_delivery(js, spec, msg)]
    decoded = [item for msg in current if (item := await _decode_or_dead_letter(js, spec, msg))]
    if not decoded:
        return
    # One span per event, each in its own trace, all covering the batch's one transaction.
    spans = [
        tracer.start_span(f"project {envelope.type}", context=context_from(delivery.headers), kind=SpanKind.CONSUMER)
        for envelope, delivery in decoded
    ]
    try:
        await _apply_batch(js, spec, decoded, handler, available)
    finally:
        for span in spans:
            span.end()


async def _apply_batch(
    js: JetStreamContext,
    spec: ConsumerSpec,
    decoded: list[tuple[Envelope[EventData], Delivery]],
    handler: BatchHandler,
    available: Probe | None,
) -> None:
    try:
        await handler(decoded)
    except Exception as batch_error:
        if store_unavailable(batch_error):
            await _hold_off(js, spec, [delivery for _, delivery in decoded], batch_error, available)
            return
        # One bad event must not hold the rest back: apply them one by one, so only the
        # failing one is retried and, in the end, dead-lettered.
        logger.warning("batch failed; applying one by one", size=len(decoded))
        for position, (envelope, delivery) in enumerate(decoded):
            with bound_context(_log_context(delivery) | {"event_type": envelope.type}):
                try:
                    await handler([(envelope, delivery)])
                except Exception as error:
                    if store_unavailable(error):
                        await _hold_off(js, spec, [later for _, later in decoded[position:]], error, available)
                        return
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
        # Used only if the durable is missing when the subscriber binds (deleted after the
        # registry declared it): nats-py would then create it (filtered on the one subject
        # above, ``hub.>`` for a role with several, without this), which only the registry's
        # NATS user may, so the service fails to start and is restarted.
        config=spec.config(),
        pull_sub=pull_sub,
        ack_policy=AckPolicy.MANUAL,
        title=title,
        # Pulled messages arrive on the owning service's own inboxes (FastStream's default
        # is the plain ``_INBOX.``, which NATS permissions let no service read).
        inbox_prefix=f"{inbox_prefix(owner_of(spec))}.".encode(),
        # FastStream would publish the handler's result to a ``reply_to`` header, which
        # anyone who may publish an event could set: a stored event is never a request.
        no_reply=True,
    )
    return subscriber


def subscribe(
    broker: NatsBroker,
    spec: ConsumerSpec,
    handler: EventHandler,
    *,
    concurrency: int,
    title: str,
    available: Probe | None = None,
) -> None:
    """Bind ``handler`` to the role's durable; ``concurrency`` messages are handled at once.

    ``available`` probes the handler's database after it failed to answer, so fetching
    resumes as soon as it is back.
    """

    @_pull_subscriber(broker, spec, PullSub(batch_size=concurrency, timeout=1.0), title)
    async def consume(message: NatsMessage) -> None:
        await handle_one(jetstream_of(broker), spec, message.raw_message, handler, available=available)


def subscribe_batches(
    broker: NatsBroker,
    spec: ConsumerSpec,
    handler: BatchHandler,
    *,
    batch_size: int,
    title: str,
    available: Probe | None = None,
) -> None:
    """Bind a batch handler (a projection) to the role's durable. One process gets its
    batches in stream order; replicas sharing the durable do not keep an order between them,
    so a handler's rules must give the same result whichever of two events comes first.

    ``available`` probes the projection's database after it failed to answer.
    """

    @_pull_subscriber(broker, spec, PullSub(batch_size=batch_size, timeout=0.2, batch=True), title)
    async def consume(message: NatsMessage) -> None:
        raw = message.raw_message
        messages = raw if isinstance(raw, list) else [raw]
        await handle_batch(jetstream_of(broker), spec, messages, handler, available=available)
