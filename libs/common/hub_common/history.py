"""Reading the audit log (HUB_EVENTS) back: who did what, when, for which firm.

An ordered, ephemeral consumer reads the stream from a start time, filtered by subject
(one firm is ``hub.<firm>.>``), so reading the history never disturbs the services'
durable consumers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import BaseModel, ValidationError

from hub_common.events import Envelope, EventData, InvalidEvent, decode_event
from hub_common.logging import get_logger
from hub_common.streams import DEAD_LETTER_STREAM, EVENTS_STREAM, dead_letter_filter

logger = get_logger(__name__)


@dataclass(frozen=True)
class HistoryFilter:
    firm_id: uuid.UUID | None = None
    client_id: uuid.UUID | None = None
    accountant_id: str | None = None
    event_types: frozenset[str] = field(default_factory=frozenset)
    since: datetime | None = None
    until: datetime | None = None

    @property
    def subject(self) -> str:
        return f"hub.{self.firm_id}.>" if self.firm_id else "hub.>"

    def matches(self, envelope: Envelope[EventData]) -> bool:
        if self.event_types and envelope.type not in self.event_types:
            return False
        if self.until is not None and envelope.occurred_at > self.until:
            return False
        if self.client_id is not None and getattr(envelope.data, "client_id", None) != self.client_id:
            return False
        if self.accountant_id is not None:
            about = {envelope.actor.id, str(getattr(envelope.data, "accountant_id", ""))}
            if self.accountant_id not in about:
                return False
        return True


# How long reading may go without a message while the consumer says more are there: a lost
# ordered consumer is restarted by nats-py within about 10 s (two missed heartbeats).
STALL_LIMIT_SECONDS = 60.0
# Following up to --until: events stored this long after it may still have happened before
# it (an outbox relaying a backlog).
FOLLOW_GRACE = timedelta(minutes=1)


class HistoryIncomplete(RuntimeError):
    """The audit log stopped coming though the rest of it is there."""


# Told of each message of the log this code cannot read: (stream sequence, subject, why).
Unreadable = Callable[[int, str, str], None]


async def read_history(
    js: JetStreamContext,
    wanted: HistoryFilter,
    *,
    follow: bool = False,
    idle_seconds: float = 1.0,
    on_unreadable: Unreadable | None = None,
) -> AsyncIterator[tuple[int, Envelope[EventData]]]:
    """(stream sequence, event) in stream order, up to the end of the log as it is when asked
    (the consumer's count of what is left says when), or on and on with ``follow`` (until
    ``wanted.until`` has passed, if it is given).

    A silence is not the end: while the consumer says messages are left (its delivery lost
    and being restarted), reading waits for them, up to ``STALL_LIMIT_SECONDS``, then raises
    :class:`HistoryIncomplete` rather than end a listing cut short as if it were whole.

    A message this code cannot read (an event of a newer release: a field it does not know)
    is not skipped in silence: ``on_unreadable`` is told of it, whatever the filter, since
    the filter cannot be applied to what cannot be read."""
    since = wanted.since
    if since is not None and since.microsecond == 0:
        # nats-py cannot parse the consumer info the server echoes for a start time without a
        # fractional second; one microsecond later changes nothing a person would ask for.
        since = since.replace(microsecond=1)
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME if since else DeliverPolicy.ALL,
        opt_start_time=since,
    )
    subscription = await js.subscribe(wanted.subject, stream=EVENTS_STREAM, ordered_consumer=True, config=config)
    silent_since: float | None = None
    try:
        while True:
            try:
                message = await subscription.next_msg(timeout=idle_seconds)
            except nats.errors.TimeoutError:
                if follow:
                    if _followed_past(wanted):
                        return
                    continue
                if await _nothing_left(subscription):
                    return
                silent_since = silent_since or time.monotonic()
                if time.monotonic() - silent_since > STALL_LIMIT_SECONDS:
                    raise HistoryIncomplete(
                        f"the audit log stopped coming for {STALL_LIMIT_SECONDS:.0f} s though more of it is there"
                    ) from None
                continue
            silent_since = None
            try:
                envelope = decode_event(message.data, subject=message.subject)
            except InvalidEvent as error:
                envelope = None
                if on_unreadable is not None:
                    on_unreadable(message.metadata.sequence.stream, message.subject, _why(error))
            if envelope is not None and wanted.matches(envelope):
                yield message.metadata.sequence.stream, envelope
            if not follow and message.metadata.num_pending == 0:
                return
            # On a busy log no second passes without a message: checked after each too.
            if follow and _followed_past(wanted):
                return
    finally:
        await subscription.unsubscribe()


def _why(error: InvalidEvent) -> str:
    """Why an event cannot be read: where its fields are wrong (their values left out)."""
    cause = error.__cause__
    if not isinstance(cause, ValidationError):
        return str(error)
    where = "; ".join(
        f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}" for problem in cause.errors(include_input=False)[:5]
    )
    return f"{error}: {where}"


def _followed_past(wanted: HistoryFilter) -> bool:
    return wanted.until is not None and datetime.now(UTC) > wanted.until + FOLLOW_GRACE


async def _nothing_left(subscription: JetStreamContext.PushSubscription) -> bool:
    """Whether everything the consumer was to deliver has been taken (else some waits here,
    or it is being restarted)."""
    if subscription.pending_msgs:
        return False
    try:
        return (await subscription.consumer_info()).num_pending == 0
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
        return False


class DeadLetter(BaseModel):
    """One message no handler could take, and why."""

    dead_letter_sequence: int
    consumer: str
    stream: str
    stream_sequence: int
    subject: str
    num_delivered: int
    error: str
    dead_lettered_at: datetime
    # The message as it arrived: text, or base64 when it was not UTF-8.
    payload: str | None = None
    payload_base64: str | None = None


async def read_dead_letters(js: JetStreamContext, *, firm_id: uuid.UUID | None = None) -> AsyncIterator[dict[str, Any]]:
    """Messages no handler could take, oldest first, as the consumers recorded them (each a
    valid ``DeadLetter``).

    Every one, or only those whose subject carried ``firm_id``. Reading stops at the last
    dead letter the stream held when it started (a later one waits for the next read).

    One message get each, not a consumer: a consumer names its own deliver subject, which
    nats-server does not check against its creator's permissions, and dead letters hold
    what a service chose to write, so a service that could create one could deliver such
    text to any subject (a grant's key, another service's events).
    """
    import json

    subject = dead_letter_filter(firm_id)
    state = (await js.stream_info(DEAD_LETTER_STREAM, subjects_filter=subject)).state
    if not sum((state.subjects or {}).values()):
        return
    sequence = state.first_seq
    while sequence <= state.last_seq:
        try:
            message = await js.get_msg(DEAD_LETTER_STREAM, seq=sequence, subject=subject, next=True)
        except nats.js.errors.NotFoundError:
            return  # none left with this subject
        if message.seq is None or message.seq > state.last_seq:
            return
        sequence = message.seq + 1
        try:
            record: dict[str, Any] = json.loads(message.data or b"") | {"dead_letter_sequence": message.seq}
            DeadLetter.model_validate(record)
        except (ValueError, TypeError):
            # Any service may write under its consumers' dead letters: one that is not a
            # record as the consumers write them is left out, not the rest with it.
            logger.warning("not a dead-letter record; left out", dead_letter_sequence=message.seq)
            continue
        yield record
