"""Streams and consumers on a real nats-server: declared once, reconciled, tamper-proof."""

from __future__ import annotations

import uuid

import nats.js.errors
import pytest
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig

from hub_common.bus import publish_event
from hub_common.events import Actor, ClientRemoved, new_envelope
from hub_common.streams import (
    EVENTS_STREAM,
    FETCHER_CONSUMER,
    SNAPSHOTS_STREAM,
    StreamLimits,
    declare_topology,
)


async def test_declaring_twice_changes_nothing(jetstream: JetStreamContext) -> None:
    before = await jetstream.stream_info(EVENTS_STREAM)
    await declare_topology(jetstream)
    after = await jetstream.stream_info(EVENTS_STREAM)
    assert before.config.as_dict() == after.config.as_dict()
    assert after.config.deny_delete and after.config.deny_purge
    assert after.config.duplicate_window == 120
    snapshots = await jetstream.stream_info(SNAPSHOTS_STREAM)
    assert snapshots.config.max_msgs_per_subject == StreamLimits().snapshots_per_company


async def test_a_drifted_consumer_is_reconciled(jetstream: JetStreamContext) -> None:
    drifted = FETCHER_CONSUMER.config()
    drifted.max_deliver = 2
    drifted.ack_wait = 5
    await jetstream.add_consumer(FETCHER_CONSUMER.stream, drifted)
    assert (await jetstream.consumer_info(EVENTS_STREAM, "fetcher")).config.max_deliver == 2
    await declare_topology(jetstream)
    reconciled = (await jetstream.consumer_info(EVENTS_STREAM, "fetcher")).config
    assert reconciled.max_deliver == FETCHER_CONSUMER.max_deliver
    assert reconciled.ack_wait == FETCHER_CONSUMER.ack_wait_seconds


async def test_audit_log_refuses_delete_and_purge(jetstream: JetStreamContext) -> None:
    envelope = new_envelope(ClientRemoved(client_id=uuid.uuid4()), firm_id=uuid.uuid4(), actor=Actor.service("t"))
    ack = await publish_event(jetstream, envelope)
    with pytest.raises(nats.js.errors.Error):
        await jetstream.purge_stream(EVENTS_STREAM)
    with pytest.raises(nats.js.errors.Error):
        await jetstream.delete_msg(EVENTS_STREAM, ack.seq)
    stored = await jetstream.get_msg(EVENTS_STREAM, ack.seq)
    assert stored.data == envelope.to_bytes()


async def test_republishing_an_event_is_dropped_as_duplicate(jetstream: JetStreamContext) -> None:
    envelope = new_envelope(ClientRemoved(client_id=uuid.uuid4()), firm_id=uuid.uuid4(), actor=Actor.service("t"))
    first = await publish_event(jetstream, envelope)
    second = await publish_event(jetstream, envelope)
    assert second.duplicate and second.seq == first.seq


async def test_a_subject_outside_the_firm_scheme_is_not_stored(jetstream: JetStreamContext) -> None:
    with pytest.raises(nats.js.errors.NoStreamResponseError):
        await jetstream.publish("hub.some.unknown.subject", b"{}", timeout=2)


def test_consumer_config_is_explicit() -> None:
    config: ConsumerConfig = FETCHER_CONSUMER.config()
    assert config.durable_name == "fetcher"
    assert config.filter_subjects and all(s.startswith("hub.*.") for s in config.filter_subjects)
