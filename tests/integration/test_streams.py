"""Streams and consumers on a real nats-server: declared once, reconciled, tamper-proof."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import nats.js.errors
import pytest
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from hub_common.bus import publish_event
from hub_common.events import Actor, ClientRemoved, new_envelope
from hub_common.local_nats import LocalNatsServer
from hub_common.streams import (
    CONSUMERS,
    EVENTS_STREAM,
    FETCHER_CONSUMER,
    GATEWAY_EVENTS_CONSUMER,
    SNAPSHOTS_STREAM,
    StreamLimits,
    Topology,
    await_topology,
    declare_topology,
    event_subject,
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


async def test_a_service_takes_a_durable_declared_by_the_release_before_without_waiting(
    jetstream: JetStreamContext,
) -> None:
    """Releases before 2026-12-07 declared the handlers' own delivery limit, without the one
    more that dead-letters a message whose last delivery ended without an outcome: an
    upgraded service starts on it (the registry, upgraded last, adds the extra one); any
    other limit it still waits for."""
    for max_deliver, waits in ((FETCHER_CONSUMER.max_deliver, False), (2, True)):
        drifted = (await jetstream.consumer_info(EVENTS_STREAM, "fetcher")).config
        drifted.max_deliver = max_deliver
        await jetstream.add_consumer(FETCHER_CONSUMER.stream, drifted)
        waiting = asyncio.create_task(await_topology(jetstream, Topology(), consumers={"fetcher"}))
        await asyncio.wait({waiting}, timeout=3)
        assert waiting.done() is not waits, max_deliver
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
    await declare_topology(jetstream)


async def test_a_drifted_consumer_is_reconciled(jetstream: JetStreamContext) -> None:
    drifted = (await jetstream.consumer_info(EVENTS_STREAM, "fetcher")).config
    drifted.max_deliver = 2
    drifted.ack_wait = 5
    await jetstream.add_consumer(FETCHER_CONSUMER.stream, drifted)
    assert (await jetstream.consumer_info(EVENTS_STREAM, "fetcher")).config.max_deliver == 2
    await declare_topology(jetstream)
    reconciled = (await jetstream.consumer_info(EVENTS_STREAM, "fetcher")).config
    assert reconciled.max_deliver == FETCHER_CONSUMER.max_deliver + 1
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


@pytest.fixture
async def own_broker(tmp_path: Path) -> AsyncIterator[JetStreamContext]:
    """A broker of the test's own: these tests delete and remake the roles' durables."""
    with LocalNatsServer(tmp_path / "nats") as server:
        connection = await nats.connect(server.url)
        try:
            js = connection.jetstream()
            await declare_topology(js, patience_seconds=5)
            yield js
        finally:
            await connection.close()


async def _history(js: JetStreamContext, events: int) -> None:
    firm_id = str(uuid.uuid4())
    for _ in range(events):
        await js.publish(event_subject(firm_id, "RefreshRequested"), b"{}")
        await js.publish(event_subject(firm_id, "InvitationAccepted"), b"{}")
        await js.publish(event_subject(firm_id, "ColleagueInvited"), b"{}")


async def test_a_durable_made_again_reads_history_only_for_the_read_model(own_broker: JetStreamContext) -> None:
    """After a deletion, a restore without consumers or an upgrade that adds a durable, the
    registry makes it again: a role that acts on what it reads (refreshes BC, sends mail,
    adds clients) must not do again all that the audit log holds; the read model must."""
    js = own_broker
    await _history(js, events=3)
    for spec in CONSUMERS:
        await js.delete_consumer(spec.stream, spec.durable)
    await declare_topology(js, patience_seconds=5)

    pending = {spec.durable: (await js.consumer_info(spec.stream, spec.durable)).num_pending for spec in CONSUMERS}
    assert pending == {
        "fetcher": 0,
        "registry": 0,
        "registry-snapshots": 0,
        "invitations": 0,
        "gateway-events": 9,
        "gateway-snapshots": 0,
    }
    assert (await js.consumer_info(EVENTS_STREAM, "fetcher")).config.deliver_policy == DeliverPolicy.NEW
    # What is published from then on reaches every role.
    await _history(js, events=1)
    for spec in (FETCHER_CONSUMER, GATEWAY_EVENTS_CONSUMER):
        info = await js.consumer_info(spec.stream, spec.durable)
        assert info.num_pending == (1 if spec is FETCHER_CONSUMER else 12)
    await await_topology(js, Topology(), consumers=[spec.durable for spec in CONSUMERS])


async def test_durables_made_on_empty_streams_start_as_earlier_releases_declare_them(
    own_broker: JetStreamContext,
) -> None:
    """A new installation: an earlier release's registry (going back) accepts them as they are."""
    for spec in CONSUMERS:
        assert (await own_broker.consumer_info(spec.stream, spec.durable)).config.deliver_policy == DeliverPolicy.ALL


async def test_a_durable_of_an_earlier_release_keeps_its_start_when_updated(own_broker: JetStreamContext) -> None:
    """Durables made by earlier releases read from the first event; a new filter is applied
    to them in place (the server refuses to change where a durable starts)."""
    js = own_broker
    await js.delete_consumer(FETCHER_CONSUMER.stream, FETCHER_CONSUMER.durable)
    earlier = FETCHER_CONSUMER.config()
    earlier.deliver_policy = DeliverPolicy.ALL
    earlier.filter_subjects = list(FETCHER_CONSUMER.filter_subjects[:2])
    await js.add_consumer(FETCHER_CONSUMER.stream, earlier)

    await declare_topology(js, patience_seconds=5)

    updated = (await js.consumer_info(FETCHER_CONSUMER.stream, FETCHER_CONSUMER.durable)).config
    assert sorted(updated.filter_subjects or []) == sorted(FETCHER_CONSUMER.filter_subjects)
    assert updated.deliver_policy == DeliverPolicy.ALL
    # The fetcher takes it as it is: where it started does not matter once it exists.
    await asyncio.wait_for(await_topology(js, Topology(), consumers=["fetcher"]), timeout=5)


async def test_a_read_model_durable_that_skips_history_is_not_used(own_broker: JetStreamContext) -> None:
    js = own_broker
    spec = GATEWAY_EVENTS_CONSUMER
    await js.delete_consumer(spec.stream, spec.durable)
    await js.add_consumer(spec.stream, dataclasses.replace(spec, replays_history=False).config())

    # The registry cannot change where it starts (it logs so) and does not fail on it; the
    # gateway does not use it. (Log lines are not asserted: structlog's cached loggers
    # escape capture_logs once an earlier test has configured logging.)
    await declare_topology(js, patience_seconds=5)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(await_topology(js, Topology(), consumers=[spec.durable]), timeout=1.5)
    assert (await js.consumer_info(spec.stream, spec.durable)).config.deliver_policy == DeliverPolicy.NEW
