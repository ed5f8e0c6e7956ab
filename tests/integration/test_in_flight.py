"""The fetcher's pull loop on a real JetStream, at shutdown: what it holds goes back at once,
and it leaves nothing that keeps the connection's drain (and so the process) from ending."""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import nats
import pytest
from nats.js import JetStreamContext

from hub_common.bus import publish_event
from hub_common.consumers import Delivery
from hub_common.events import Actor, ClientRemoved, Envelope, EventData, new_envelope
from hub_common.streams import EVENTS_STREAM, ConsumerSpec
from hub_fetcher.in_flight import PULL_WAIT_SECONDS, InFlightConsumer


async def _spec(js: JetStreamContext, firm: uuid.UUID) -> ConsumerSpec:
    spec = ConsumerSpec(
        stream=EVENTS_STREAM,
        durable=f"test-{uuid.uuid4().hex[:8]}",
        filter_subjects=(f"hub.{firm}.>",),
        # Far longer than the test: a message back before this was given back, not timed out.
        ack_wait_seconds=60,
        max_deliver=5,
    )
    await js.add_consumer(EVENTS_STREAM, spec.config())
    return spec


async def _ignore(envelope: Envelope[EventData], delivery: Delivery) -> None:
    return None


async def test_a_stopped_consumer_does_not_hold_up_the_connections_drain(
    nats_url: str, jetstream: JetStreamContext
) -> None:
    spec = await _spec(jetstream, uuid.uuid4())
    connection = await nats.connect(nats_url)
    try:
        consumer = InFlightConsumer(connection.jetstream(), spec, _ignore, limit=4)
        await consumer.start()
        # A few idle pulls: each expired pull leaves a status message on the subscription.
        await asyncio.sleep(PULL_WAIT_SECONDS * 3.5)
        await consumer.stop(grace_seconds=1)
        # What FastStream does after the shutdown hooks. It used to wait out nats-py's 30 s
        # drain timeout (a timed-out drain ends without an error, hence the clock).
        started = time.monotonic()
        await asyncio.wait_for(connection.drain(), timeout=10)
        assert time.monotonic() - started < 5
    finally:
        if not connection.is_closed:
            await connection.close()


async def test_a_refresh_unfinished_at_shutdown_goes_back_at_once(nats_url: str, jetstream: JetStreamContext) -> None:
    firm = uuid.uuid4()
    spec = await _spec(jetstream, firm)
    started = asyncio.Event()

    async def never_finishes(envelope: Envelope[EventData], delivery: Delivery) -> None:
        started.set()
        await asyncio.Event().wait()

    connection = await nats.connect(nats_url)
    try:
        consumer = InFlightConsumer(connection.jetstream(), spec, never_finishes, limit=4)
        await consumer.start()
        await publish_event(
            jetstream, new_envelope(ClientRemoved(client_id=uuid.uuid4()), firm_id=firm, actor=Actor.service("t"))
        )
        await asyncio.wait_for(started.wait(), timeout=10)
        assert consumer.in_hand == 1
        await consumer.stop(grace_seconds=0.2)
        assert consumer.in_hand == 0
    finally:
        await connection.close()

    # Another fetcher gets it now, not after the 60 s ack wait.
    subscription = await jetstream.pull_subscribe_bind(spec.durable, stream=spec.stream)
    try:
        [message] = await subscription.fetch(1, timeout=10)
    except TimeoutError:
        pytest.fail("the unfinished refresh was not given back")
    assert message.metadata.num_delivered == 2
    await message.ack()
    await subscription.unsubscribe()


async def test_a_stop_ends_even_when_a_pull_swallows_its_cancellation(
    nats_url: str, jetstream: JetStreamContext
) -> None:
    """Python 3.11's wait_for, in every nats-py pull, swallows a cancellation that lands as
    the pull's answer arrives (an expired pull's 408 comes once per pull wait), and the pull
    loop went on pulling: a fetcher outlived its SIGTERM grace. Short pulls make that instant
    frequent (several in a hundred stops at random moments); every stop still ends."""
    spec = await _spec(jetstream, uuid.uuid4())
    connection = await nats.connect(nats_url)
    pull_wait_seconds = 0.01
    try:
        for _ in range(100):
            consumer = InFlightConsumer(
                connection.jetstream(), spec, _ignore, limit=1, pull_wait_seconds=pull_wait_seconds
            )
            await consumer.start()
            await asyncio.sleep(random.uniform(0, 2 * pull_wait_seconds))
            # Waited for, not cancelled: a stop that swallows a cancellation would hide it.
            stopping = asyncio.create_task(consumer.stop(grace_seconds=0))
            ended, _ = await asyncio.wait({stopping}, timeout=10)
            assert ended, "a stop did not end: its pull loop went on pulling"
    finally:
        await connection.close()
