"""Retention and delivery settings on a real nats-server of its own (changing the limits of
the shared server would change them for every other test): applied by declare_topology,
reconciled when they change, and the audit log and snapshots refuse delete and purge."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType

from hub_cli.supervisor import DevSecrets, Supervisor
from hub_common.local_nats import LocalNatsServer
from hub_common.settings import HubSettings
from hub_common.streams import (
    BC_SLOT_LEASE_SECONDS,
    BC_SLOTS_BUCKET,
    DEAD_LETTER_STREAM,
    EVENTS_STREAM,
    FETCHER_CONSUMER,
    GATEWAY_EVENTS_CONSUMER,
    GATEWAY_SNAPSHOTS_CONSUMER,
    REGISTRY_CONSUMER,
    SNAPSHOTS_STREAM,
    StreamLimits,
    Topology,
    declare_topology,
)

SEVEN_YEARS = 7 * 365 * 24 * 3600.0


@pytest.fixture(scope="module")
def own_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNatsServer]:
    with LocalNatsServer(tmp_path_factory.mktemp("retention-nats")) as server:
        yield server


@pytest.fixture
async def js(own_nats: LocalNatsServer) -> AsyncIterator[JetStreamContext]:
    connection: Client = await nats.connect(own_nats.url)
    yield connection.jetstream()
    await connection.close()


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file of the developer's
    monkeypatch.setenv("HUB_AUDIT_MAX_AGE_SECONDS", str(SEVEN_YEARS))
    monkeypatch.setenv("HUB_SNAPSHOTS_PER_COMPANY", "3")
    monkeypatch.setenv("HUB_FETCHER_ACK_WAIT_SECONDS", "5")
    monkeypatch.setenv("HUB_RETRY_MAX_DELAY_SECONDS", "2")
    topology = Topology.from_settings(HubSettings())
    assert topology.streams.audit_max_age_seconds == SEVEN_YEARS
    assert topology.streams.snapshots_per_company == 3
    assert topology.consumer(FETCHER_CONSUMER).ack_wait_seconds == 5
    assert topology.consumer(REGISTRY_CONSUMER).retry_delay(10) == 2


def test_production_defaults() -> None:
    topology = Topology.from_settings(HubSettings(_env_file=None))
    assert topology.streams.audit_max_age_seconds == 0  # the audit log is kept forever
    assert topology.streams.snapshots_per_company == 10
    fetcher = topology.consumer(FETCHER_CONSUMER)
    assert (fetcher.ack_wait_seconds, fetcher.max_deliver) == (60, 8)
    assert [fetcher.retry_delay(n) for n in (1, 2, 3, 7, 8)] == [1, 2, 4, 60, 60]


async def test_retention_is_applied_and_reconciled(js: JetStreamContext) -> None:
    await declare_topology(js)
    events = (await js.stream_info(EVENTS_STREAM)).config
    assert events.max_age in (0, None)  # forever
    settings = HubSettings(audit_max_age_seconds=SEVEN_YEARS, snapshots_per_company=2, _env_file=None)
    await declare_topology(js, Topology.from_settings(settings))
    events = (await js.stream_info(EVENTS_STREAM)).config
    snapshots = (await js.stream_info(SNAPSHOTS_STREAM)).config
    assert events.max_age == SEVEN_YEARS
    assert snapshots.max_msgs_per_subject == 2
    for config in (events, snapshots):
        assert config.deny_delete and config.deny_purge


async def test_only_the_last_n_snapshots_per_company_are_kept(js: JetStreamContext) -> None:
    await declare_topology(js, Topology(streams=StreamLimits(snapshots_per_company=2)))
    firm, kept_company, other_company = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    subject = f"hub.{firm}.company.{kept_company}.snapshot"
    for reading in range(4):
        await js.publish(subject, f"reading {reading}".encode(), headers={"Nats-Msg-Id": f"{subject}:{reading}"})
    other = f"hub.{firm}.company.{other_company}.snapshot"
    await js.publish(other, b"only reading", headers={"Nats-Msg-Id": other})
    held = (await js.stream_info(SNAPSHOTS_STREAM, subjects_filter=f"hub.{firm}.>")).state.subjects
    assert held == {subject: 2, other: 1}
    newest = await js.get_last_msg(SNAPSHOTS_STREAM, subject)
    assert newest.data == b"reading 3"


@pytest.mark.parametrize(
    ("stream", "subject"),
    [(EVENTS_STREAM, "hub.{firm}.client.removed"), (SNAPSHOTS_STREAM, "hub.{firm}.company.{firm}.snapshot")],
)
async def test_both_streams_refuse_delete_and_purge(js: JetStreamContext, stream: str, subject: str) -> None:
    await declare_topology(js)
    firm = uuid.uuid4()
    ack = await js.publish(subject.format(firm=firm), b"kept for the audit", headers={"Nats-Msg-Id": str(firm)})
    with pytest.raises(nats.js.errors.Error):
        await js.purge_stream(stream)
    with pytest.raises(nats.js.errors.Error):
        await js.purge_stream(stream, subject=subject.format(firm=firm))
    with pytest.raises(nats.js.errors.Error):
        await js.delete_msg(stream, ack.seq)
    assert (await js.get_msg(stream, ack.seq)).data == b"kept for the audit"


async def test_delivery_settings_reach_the_durables_and_are_reconciled(js: JetStreamContext) -> None:
    fast = HubSettings(
        fetcher_ack_wait_seconds=4,
        fetcher_max_deliver=3,
        projection_ack_wait_seconds=5,
        projection_max_deliver=4,
        _env_file=None,
    )
    await declare_topology(js, Topology.from_settings(fast))
    fetcher = (await js.consumer_info(EVENTS_STREAM, FETCHER_CONSUMER.durable)).config
    # The server's limit is one delivery more than the handlers use (ConsumerSpec.config).
    assert (fetcher.ack_wait, fetcher.max_deliver) == (4, 3 + 1)
    for spec in (GATEWAY_EVENTS_CONSUMER, GATEWAY_SNAPSHOTS_CONSUMER):
        projection = (await js.consumer_info(spec.stream, spec.durable)).config
        assert (projection.ack_wait, projection.max_deliver) == (5, 4 + 1)
    registry = (await js.consumer_info(EVENTS_STREAM, REGISTRY_CONSUMER.durable)).config
    assert (registry.ack_wait, registry.max_deliver) == (
        REGISTRY_CONSUMER.ack_wait_seconds,
        REGISTRY_CONSUMER.max_deliver + 1,
    )
    # Back to the defaults: every durable is updated in place, not left as it was.
    await declare_topology(js)
    fetcher = (await js.consumer_info(EVENTS_STREAM, FETCHER_CONSUMER.durable)).config
    assert (fetcher.ack_wait, fetcher.max_deliver) == (60, 8 + 1)


async def test_the_slot_lease_follows_its_setting(js: JetStreamContext) -> None:
    await declare_topology(js, Topology(streams=StreamLimits(bc_slot_lease_seconds=8)))
    assert (await (await js.key_value(BC_SLOTS_BUCKET)).status()).ttl == 8
    await declare_topology(js)
    assert (await (await js.key_value(BC_SLOTS_BUCKET)).status()).ttl == BC_SLOT_LEASE_SECONDS == 15


async def test_the_slot_bucket_is_kept_on_file_to_outlive_a_broker_restart(js: JetStreamContext) -> None:
    await js.delete_key_value(BC_SLOTS_BUCKET)
    # As earlier versions declared it: in memory, gone after any restart of the broker.
    await js.create_key_value(KeyValueConfig(bucket=BC_SLOTS_BUCKET, history=1, ttl=120, storage=StorageType.MEMORY))
    await declare_topology(js)
    status = await (await js.key_value(BC_SLOTS_BUCKET)).status()
    assert status.stream_info.config.storage == StorageType.FILE
    assert status.ttl == BC_SLOT_LEASE_SECONDS


def test_every_topology_setting_is_a_hub_setting() -> None:
    names = Topology.setting_names()
    assert "HUB_FETCHER_ACK_WAIT_SECONDS" in names and "HUB_SNAPSHOTS_PER_COMPANY" in names
    assert all(name.removeprefix("HUB_").lower() in HubSettings.model_fields for name in names)


def test_hub_up_gives_every_child_the_same_topology(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HUB_SNAPSHOTS_PER_COMPANY", "3")
    monkeypatch.setenv("HUB_DATABASE_URL", "sqlite:///elsewhere.db")  # not a topology setting
    supervisor = Supervisor(home=tmp_path)
    environment = supervisor._base_environment(DevSecrets("id", "secret", "key"), "nats://127.0.0.1:4222")
    assert environment["HUB_SNAPSHOTS_PER_COMPANY"] == "3"
    assert "HUB_DATABASE_URL" not in environment


async def test_dead_letters_are_bounded_per_consumer_and_firm(js: JetStreamContext) -> None:
    """One firm's failures neither fill the broker nor push out another firm's dead letters."""
    day = 24 * 3600.0
    await declare_topology(
        js, Topology(streams=StreamLimits(dead_letters_per_firm=2, dead_letters_max_age_seconds=day))
    )
    config = (await js.stream_info(DEAD_LETTER_STREAM)).config
    assert (config.max_msgs_per_subject, config.max_age) == (2, day)
    noisy, quiet = uuid.uuid4(), uuid.uuid4()
    noisy_subject = f"deadletter.{FETCHER_CONSUMER.durable}.{noisy}"
    quiet_subject = f"deadletter.{FETCHER_CONSUMER.durable}.{quiet}"
    await js.publish(quiet_subject, b"the quiet firm's one")
    for letter in range(5):
        await js.publish(noisy_subject, f"letter {letter}".encode())
    held = (await js.stream_info(DEAD_LETTER_STREAM, subjects_filter="deadletter.>")).state.subjects
    assert held == {noisy_subject: 2, quiet_subject: 1}
    assert (await js.get_last_msg(DEAD_LETTER_STREAM, noisy_subject)).data == b"letter 4"
    # Back to the defaults, as a registry of the next release declares them.
    await declare_topology(js)
    config = (await js.stream_info(DEAD_LETTER_STREAM)).config
    assert (config.max_msgs_per_subject, config.max_age) == (1000, 90 * day)
