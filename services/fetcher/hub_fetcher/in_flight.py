"""Pulling refreshes from the shared durable: up to N in flight, more as soon as any ends.

FastStream's pull subscriber fetches a batch and handles all of it before it fetches again,
so one slow tenant holds the whole batch's capacity, and a few slow tenants hold everyone's.
Here each message is a task of its own: the loop pulls as many messages as there are free
places, and pulls again the moment one ends. A slow refresh holds one place and its own
tenant's BC slots, nothing else.

Each message goes through ``hub_common.consumers.handle_one``, as on every other consumer:
the same decoding, dead letters for invalid payloads, ack after the handler returned,
nack with a growing delay (or the handler's ``Retry`` delay), and dead letters after
``max_deliver``. The handler reports progress (``Delivery.keep_alive``) while it works.
"""

from __future__ import annotations

import asyncio
import contextlib

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from hub_common.consumers import EventHandler, handle_one
from hub_common.logging import get_logger
from hub_common.streams import ConsumerSpec
from hub_common.tasks import cancel_and_wait

logger = get_logger(__name__)

# How long one pull waits on an idle stream before it asks again.
PULL_WAIT_SECONDS = 1.0
# After a pull fails (the broker is away), the next waits this long.
PULL_FAILED_PAUSE_SECONDS = 1.0


class InFlightConsumer:
    """Keeps up to ``limit`` messages of a durable pull consumer in hand at once."""

    def __init__(
        self,
        js: JetStreamContext,
        spec: ConsumerSpec,
        handler: EventHandler,
        *,
        limit: int,
        pull_wait_seconds: float = PULL_WAIT_SECONDS,
    ) -> None:
        self._js = js
        self._spec = spec
        self._handler = handler
        self._limit = limit
        self._pull_wait_seconds = pull_wait_seconds
        self._in_hand: set[asyncio.Task[None]] = set()
        self._room = asyncio.Event()
        self._room.set()
        self._puller: asyncio.Task[None] | None = None
        self._subscription: JetStreamContext.PullSubscription | None = None

    @property
    def in_hand(self) -> int:
        return len(self._in_hand)

    async def start(self) -> None:
        self._subscription = await self._js.pull_subscribe_bind(durable=self._spec.durable, stream=self._spec.stream)
        self._puller = asyncio.create_task(self._pull(self._subscription), name=f"pull {self._spec.durable}")

    async def stop(self, grace_seconds: float) -> None:
        """Stop pulling; give the messages in hand ``grace_seconds``, then give the rest back."""
        if self._puller is not None:
            await cancel_and_wait(self._puller)
        if self._subscription is not None:
            # Unsubscribed here, not left to the connection's drain: nats-py's fetch takes
            # messages off the subscription's queue without marking them done, so a drain
            # waits on that queue until its 30 s timeout and the process outlives its
            # SIGTERM grace.
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
        if not self._in_hand:
            return
        _, unfinished = await asyncio.wait(self._in_hand, timeout=grace_seconds)
        await asyncio.gather(*(cancel_and_wait(task) for task in unfinished))
        logger.info("consumer stopped", consumer=self._spec.durable, given_back=len(unfinished))

    async def _pull(self, subscription: JetStreamContext.PullSubscription) -> None:
        # While work keeps coming, pull as many as there is room for; once a pull comes back
        # short, pull one at a time, since a pull for many on an idle stream waits for all
        # of them (or its timeout) before it returns the first.
        plenty = False
        while True:
            await self._room.wait()
            wanted = self._limit - len(self._in_hand) if plenty else 1
            try:
                messages = await subscription.fetch(batch=wanted, timeout=self._pull_wait_seconds)
            except TimeoutError:
                plenty = False
                continue
            except Exception as error:
                logger.warning("pull failed", consumer=self._spec.durable, error=repr(error)[:300])
                await asyncio.sleep(PULL_FAILED_PAUSE_SECONDS)
                continue
            plenty = len(messages) >= wanted
            for message in messages:
                self._take(message)

    def _take(self, message: Msg) -> None:
        task = asyncio.create_task(self._handle(message))
        self._in_hand.add(task)
        if len(self._in_hand) >= self._limit:
            self._room.clear()
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_hand.discard(task)
        if len(self._in_hand) < self._limit:
            self._room.set()

    async def _handle(self, message: Msg) -> None:
        try:
            await handle_one(self._js, self._spec, message, self._handler)
        except asyncio.CancelledError:
            # Stopping: hand the message back now, not after the ack wait.
            with contextlib.suppress(Exception):
                await message.nak()
            raise
        except Exception as error:
            # Settling the message failed (the broker is away): JetStream redelivers it
            # after the ack wait, once more past the handlers' last delivery, when it is
            # dead-lettered (hub_common.consumers).
            logger.warning("message not settled", consumer=self._spec.durable, error=repr(error)[:300])
