"""A stopping service closes its connection within its grace, even when a pull subscription
holds a message no fetch will take (nats-py's drain waits for that queue to empty)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import nats
from nats.js.api import ConsumerConfig

from hub_common.bus import DRAIN_TIMEOUT_SECONDS, connection_options


async def test_a_connection_drains_within_its_bound_with_a_message_no_fetch_took(nats_url: str) -> None:
    connection = await nats.connect(**connection_options(nats_url, name="drain-test"))
    js = connection.jetstream()
    suffix = uuid.uuid4().hex[:8]
    stream, subject = f"DRAIN_{suffix}", f"drain.{suffix}"
    await js.add_stream(name=stream, subjects=[subject])
    subscription = await js.pull_subscribe(subject, durable="drain", stream=stream, config=ConsumerConfig())
    await js.publish(subject, b"left behind")
    # A pull whose fetch had already given up when its message came: nats-py keeps it in the
    # subscription's queue (the private inbox is the only way to make one on purpose).
    inbox: str = subscription._deliver
    await connection.publish(
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.drain", json.dumps({"batch": 1}).encode(), reply=inbox
    )
    deadline = time.monotonic() + 10
    while (await js.consumer_info(stream, "drain")).num_ack_pending != 1:
        assert time.monotonic() < deadline, "the server never delivered the message"
        await asyncio.sleep(0.05)

    started = time.monotonic()
    await connection.drain()
    took = time.monotonic() - started
    assert connection.is_closed
    assert took < DRAIN_TIMEOUT_SECONDS + 3, f"the drain took {took:.1f} s"
