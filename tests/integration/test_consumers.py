"""Acknowledgement on a real JetStream: handled → ack, failing → nack with a delay until
max_deliver, then dead-letter; an invalid payload is dead-lettered at once."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import nats
import nats.errors
import sqlalchemy.exc
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig

from hub_common.bus import PublishFailed, create_broker, publish_event
from hub_common.consumers import (
    ENDED_WITHOUT_OUTCOME,
    Delivery,
    EventHandler,
    Retry,
    broker_unavailable,
    handle_batch,
    handle_one,
    store_unavailable,
    subscribe,
)
from hub_common.events import (
    Actor,
    ClientRemoved,
    Envelope,
    EventData,
    Failure,
    FailureKind,
    RefreshFailed,
    new_envelope,
)
from hub_common.local_nats import LocalNatsServer
from hub_common.streams import (
    DEAD_LETTER_STREAM,
    EVENTS_STREAM,
    INVITATIONS_CONSUMER,
    REGISTRY_CONSUMER,
    ConsumerSpec,
    Topology,
    declare_topology,
)


async def _spec(js: JetStreamContext, firm: uuid.UUID, max_deliver: int) -> ConsumerSpec:
    spec = ConsumerSpec(
        stream=EVENTS_STREAM,
        durable=f"test-{uuid.uuid4().hex[:8]}",
        filter_subjects=(f"hub.{firm}.>",),
        ack_wait_seconds=30,
        max_deliver=max_deliver,
    )
    await js.add_consumer(EVENTS_STREAM, spec.config())
    return spec


async def _dead_letters(js: JetStreamContext, durable: str) -> list[dict[str, object]]:
    subscription = await js.subscribe(f"deadletter.{durable}.>", stream=DEAD_LETTER_STREAM, ordered_consumer=True)
    letters = []
    try:
        while True:
            message = await subscription.next_msg(timeout=0.5)
            letters.append(json.loads(message.data))
    except TimeoutError:
        pass
    finally:
        await subscription.unsubscribe()
    return letters


async def test_success_is_acked_once(jetstream: JetStreamContext) -> None:
    firm = uuid.uuid4()
    spec = await _spec(jetstream, firm, max_deliver=3)
    await publish_event(
        jetstream, new_envelope(ClientRemoved(client_id=uuid.uuid4()), firm_id=firm, actor=Actor.service("t"))
    )
    seen: list[Envelope[EventData]] = []

    async def handler(envelope: Envelope[EventData], delivery: Delivery) -> None:
        seen.append(envelope)

    subscription = await jetstream.pull_subscribe_bind(spec.durable, stream=spec.stream)
    for message in await subscription.fetch(1, timeout=5):
        await handle_one(jetstream, spec, message, handler)
    await asyncio.sleep(0.2)
    info = await jetstream.consumer_info(spec.stream, spec.durable)
    assert len(seen) == 1
    assert info.num_ack_pending == 0
    assert info.num_pending == 0


async def test_failures_are_retried_then_dead_lettered(jetstream: JetStreamContext) -> None:
    firm = uuid.uuid4()
    spec = await _spec(jetstream, firm, max_deliver=3)
    envelope = new_envelope(ClientRemoved(client_id=uuid.uuid4()), firm_id=firm, actor=Actor.service("t"))
    await publish_event(jetstream, envelope)
    deliveries: list[int] = []

    async def handler(received: Envelope[EventData], delivery: Delivery) -> None:
        deliveries.append(delivery.num_delivered)
        raise Retry("BC is throttling", delay_seconds=0.1)

    subscription = await jetstream.pull_subscribe_bind(spec.durable, stream=spec.stream)
    for _ in range(3):
        for message in await subscription.fetch(1, timeout=5):
            await handle_one(jetstream, spec, message, handler)
    assert deliveries == [1, 2, 3]
    letters = await _dead_letters(jetstream, spec.durable)
    assert len(letters) == 1
    assert letters[0]["error"] == "BC is throttling"
    assert json.loads(str(letters[0]["payload"]))["id"] == str(envelope.id)
    info = await jetstream.consumer_info(spec.stream, spec.durable)
    assert info.num_ack_pending == 0
    assert info.num_redelivered == 0


async def _a_buggy_handler(
    jetstream: JetStreamContext,
) -> tuple[ConsumerSpec, Envelope[ClientRemoved], list[int], EventHandler, JetStreamContext.PullSubscription]:
    """An event, two deliveries retried 0.1 s apart, and a handler that always raises (the
    deliveries it saw are listed): the spec, the event, the list, the handler and a pull."""
    firm = uuid.uuid4()
    spec = dataclasses.replace(await _spec(jetstream, firm, max_deliver=2), retry_delay_seconds=0.1)
    envelope = new_envelope(ClientRemoved(client_id=uuid.uuid4()), firm_id=firm, actor=Actor.service("t"))
    await publish_event(jetstream, envelope)
    deliveries: list[int] = []

    async def handler(received: Envelope[EventData], delivery: Delivery) -> None:
        deliveries.append(delivery.num_delivered)
        raise KeyError("a bug in a handler")

    subscription = await jetstream.pull_subscribe_bind(spec.durable, stream=spec.stream)
    return spec, envelope, deliveries, handler, subscription


async def test_a_handler_that_raises_is_retried_then_dead_lettered(jetstream: JetStreamContext) -> None:
    """A bug in a handler (any exception but an outage) is retried with its delays and then
    kept as a dead letter, never left unsettled for the ack wait to redeliver."""
    spec, _, deliveries, handler, subscription = await _a_buggy_handler(jetstream)
    for _ in range(2):
        # The retry's delay is 0.1 s; an unsettled message would come back after 30 s.
        for message in await subscription.fetch(1, timeout=5):
            await handle_one(jetstream, spec, message, handler)
    assert deliveries == [1, 2]
    letters = await _dead_letters(jetstream, spec.durable)
    assert [letter["error"] for letter in letters] == ["KeyError('a bug in a handler')"]
    info = await jetstream.consumer_info(spec.stream, spec.durable)
    assert info.num_ack_pending == 0


async def test_an_event_on_another_types_subject_is_dead_lettered_unhandled(jetstream: JetStreamContext) -> None:
    """Publish permissions are per subject: a service allowed only its own event types must
    not get another type handled by putting it on one of its own subjects (an
    InvitationAccepted on the fetcher's refresh.failed would grant a tenant)."""
    firm = uuid.uuid4()
    spec = await _spec(jetstream, firm, max_deliver=3)
    forged = new_envelope(ClientRemoved(client_id=uuid.uuid4()), firm_id=firm, actor=Actor.service("t"))
    await jetstream.publish(f"hub.{firm}.refresh.failed", forged.to_bytes())
    other_firm = new_envelope(ClientRemoved(client_id=uuid.uuid4()), firm_id=uuid.uuid4(), actor=Actor.service("t"))
    await jetstream.publish(f"hub.{firm}.client.removed", other_firm.to_bytes())
    handled: list[Envelope[EventData]] = []

    async def handler(envelope: Envelope[EventData], delivery: Delivery) -> None:
        handled.append(envelope)

    subscription = await jetstream.pull_subscribe_bind(spec.durable, stream=spec.stream)
    for message in await subscription.fetch(2, timeout=5):
        await handle_one(jetstream, spec, message, handler)
    assert handled == []
    letters = await _dead_letters(jetstream, spec.durable)
    assert [str(letter["error"]) for letter in letters] == [
        f"invalid event: a ClientRemoved event for {forged.subject} arrived on hub.{firm}.refresh.failed",
        f"invalid event: a ClientRemoved event for {other_firm.subject} arrived on hub.{firm}.client.removed",
    ]


async def test_a_reply_to_header_on_an_event_gets_no_answer(tmp_path: Path) -> None:
    """FastStream answers a message whose headers name a ``reply_to`` with the handler's
    result; anyone allowed to publish an event could so make a service publish, under its own
    NATS permissions, to a subject of their choosing (a grant's KV key, say)."""
    with LocalNatsServer(tmp_path / "nats") as server:
        connection = await nats.connect(server.url)
        js = connection.jetstream()
        topology = Topology()
        await declare_topology(js, topology, patience_seconds=5)
        answers: list[bytes] = []

        async def sniff(message: Msg) -> None:
            answers.append(message.data)

        await connection.subscribe("sniffed.answer", cb=sniff)
        handled = asyncio.Event()

        async def handler(envelope: Envelope[EventData], delivery: Delivery) -> None:
            handled.set()

        broker = create_broker(server.url, name="registry")
        subscribe(broker, topology.consumer(REGISTRY_CONSUMER), handler, concurrency=1, title="test")
        await broker.start()
        try:
            failed = RefreshFailed(
                refresh_id=uuid.uuid4(),
                client_id=uuid.uuid4(),
                failure=Failure(kind=FailureKind.TENANT_NOT_FOUND, summary="s", fix="f", occurred_at=datetime.now(UTC)),
            )
            invited = new_envelope(failed, firm_id=uuid.uuid4(), actor=Actor.service("t"))
            await js.publish(invited.subject, invited.to_bytes(), headers={"reply_to": "sniffed.answer"})
            await asyncio.wait_for(handled.wait(), timeout=10)
            await asyncio.sleep(0.5)
            await connection.flush()
            assert answers == []
        finally:
            await broker.stop()
            await connection.close()


async def test_a_durable_missing_when_its_subscriber_binds_is_made_as_declared(tmp_path: Path) -> None:
    """Deleted after the service declared it, a role's durable is created again by its
    subscriber: with the role's own filters and limits, not every event of the stream."""
    with LocalNatsServer(tmp_path / "nats") as server:
        connection = await nats.connect(server.url)
        js = connection.jetstream()
        topology = Topology()
        await declare_topology(js, topology, patience_seconds=5)
        spec = topology.consumer(INVITATIONS_CONSUMER)
        await js.delete_consumer(spec.stream, spec.durable)

        async def handler(envelope: Envelope[EventData], delivery: Delivery) -> None:
            pass

        broker = create_broker(server.url, name="invitations")
        subscribe(broker, spec, handler, concurrency=1, title="test")
        await broker.start()
        try:
            made = (await js.consumer_info(spec.stream, spec.durable)).config
        finally:
            await broker.stop()
            await connection.close()
    assert sorted(made.filter_subjects or [made.filter_subject]) == sorted(spec.filter_subjects)
    assert (made.max_deliver, made.ack_wait) == (spec.max_deliver + 1, spec.ack_wait_seconds)


def test_only_a_broker_that_does_not_answer_counts_as_its_outage() -> None:
    assert broker_unavailable(nats.errors.TimeoutError())
    assert broker_unavailable(PublishFailed("no acknowledgement"))
    assert not broker_unavailable(KeyError("a bug in a handler"))


async def test_an_invalid_payload_is_dead_lettered_at_once_and_does_not_block(
    jetstream: JetStreamContext,
) -> None:
    firm = uuid.uuid4()
    spec = await _spec(jetstream, firm, max_deliver=5)
    await jetstream.publish(f"hub.{firm}.client.added", b'{"type": "ClientAdded", "data": "poison"}')
    good = new_envelope(ClientRemoved(client_id=uuid.uuid4()), firm_id=firm, actor=Actor.service("t"))
    await publish_event(jetstream, good)
    handled: list[str] = []

    async def handler(envelope: Envelope[EventData], delivery: Delivery) -> None:
        handled.append(str(envelope.id))

    subscription = await jetstream.pull_subscribe_bind(spec.durable, stream=spec.stream)
    for message in await subscription.fetch(2, timeout=5):
        await handle_one(jetstream, spec, message, handler)
    assert handled == [str(good.id)]
    letters = await _dead_letters(jetstream, spec.durable)
    assert len(letters) == 1
    assert str(letters[0]["error"]).startswith("invalid event")
    assert letters[0]["num_delivered"] == 1


def test_consumer_spec_config_round_trip() -> None:
    spec = ConsumerSpec(EVENTS_STREAM, "x", ("hub.*.client.added",), 10, 4)
    config: ConsumerConfig = spec.config()
    # One more than the handlers use: the last comes back only to be dead-lettered.
    assert config.max_deliver == 5


async def test_a_last_delivery_that_ended_without_an_outcome_comes_back_to_be_dead_lettered(
    jetstream: JetStreamContext,
) -> None:
    """The worker holding a message's last delivery stopped (a fetcher scaled in naks what
    it holds), crashed or ran past the ack wait: the message comes back once more and is
    dead-lettered, unhandled, instead of vanishing with nothing to say so."""
    spec, envelope, deliveries, handler, subscription = await _a_buggy_handler(jetstream)
    [first] = await subscription.fetch(1, timeout=5)
    await handle_one(jetstream, spec, first, handler)
    [last] = await subscription.fetch(1, timeout=5)
    await last.nak()  # the worker stopped before handling it
    [back] = await subscription.fetch(1, timeout=5)
    await handle_one(jetstream, spec, back, handler)
    assert deliveries == [1]
    letters = await _dead_letters(jetstream, spec.durable)
    assert [letter["error"] for letter in letters] == [ENDED_WITHOUT_OUTCOME]
    assert letters[0]["num_delivered"] == 3
    assert json.loads(str(letters[0]["payload"]))["id"] == str(envelope.id)
    info = await jetstream.consumer_info(spec.stream, spec.durable)
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_a_dead_letter_too_large_once_escaped_is_kept_naming_where_the_message_is(
    jetstream: JetStreamContext,
) -> None:
    """A message near the broker's size limit grows past it once escaped as JSON: its dead
    letter is kept all the same, naming its stream and sequence instead of carrying it."""
    firm = uuid.uuid4()
    spec = await _spec(jetstream, firm, max_deliver=2)
    quotes = b'"' * 700_000  # each one escaped as two characters
    published = await jetstream.publish(f"hub.{firm}.client.removed", quotes)
    subscription = await jetstream.pull_subscribe_bind(spec.durable, stream=spec.stream)
    [message] = await subscription.fetch(1, timeout=5)

    async def handler(received: Envelope[EventData], delivery: Delivery) -> None:
        raise AssertionError("an invalid event is never handled")

    await handle_one(jetstream, spec, message, handler)
    [letter] = await _dead_letters(jetstream, spec.durable)
    assert "payload" not in letter and "payload_omitted" in letter
    assert (letter["stream"], letter["stream_sequence"]) == (EVENTS_STREAM, published.seq)
    assert str(letter["error"]).startswith("invalid event")


async def test_a_store_outage_is_nacked_and_pauses_fetching_until_the_store_answers(
    jetstream: JetStreamContext,
) -> None:
    firm = uuid.uuid4()
    spec = await _spec(jetstream, firm, max_deliver=3)
    envelope = new_envelope(ClientRemoved(client_id=uuid.uuid4()), firm_id=firm, actor=Actor.service("t"))
    await publish_event(jetstream, envelope)
    store_up = False
    probes: list[bool] = []
    stored: list[int] = []

    async def handler(batch: list[tuple[Envelope[EventData], Delivery]]) -> None:
        if not store_up:
            raise sqlalchemy.exc.OperationalError("INSERT …", {}, ConnectionRefusedError("the database is down"))
        stored.extend(delivery.num_delivered for _, delivery in batch)

    async def available() -> bool:
        nonlocal store_up
        store_up = len(probes) >= 2  # the database comes back on the third probe
        probes.append(store_up)
        return store_up

    tuned = dataclasses.replace(spec, retry_delay_seconds=0.05, retry_max_delay_seconds=0.1)
    subscription = await jetstream.pull_subscribe_bind(spec.durable, stream=spec.stream)
    await handle_batch(jetstream, tuned, await subscription.fetch(1, timeout=5), handler, available=available)
    # It returned only once the store answered, and acknowledged nothing it had not stored.
    assert probes == [False, False, True]
    assert stored == []
    info = await jetstream.consumer_info(spec.stream, spec.durable)
    assert info.ack_floor.consumer_seq == 0
    # The nacked message comes back and is stored on its second delivery, not dead-lettered.
    await handle_batch(jetstream, tuned, await subscription.fetch(1, timeout=5), handler, available=available)
    assert stored == [2]
    deadline = asyncio.get_running_loop().time() + 5
    while (info := await jetstream.consumer_info(spec.stream, spec.durable)).num_ack_pending:
        assert asyncio.get_running_loop().time() < deadline, "the stored message was never acknowledged"
        await asyncio.sleep(0.05)
    assert info.num_pending == 0
    assert await _dead_letters(jetstream, spec.durable) == []


def test_only_a_store_that_does_not_answer_counts_as_an_outage() -> None:
    assert store_unavailable(sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError()))
    assert store_unavailable(ConnectionResetError())
    assert not store_unavailable(sqlalchemy.exc.IntegrityError("INSERT …", {}, ValueError("duplicate key")))
    assert not store_unavailable(ValueError("a bug in a handler"))
