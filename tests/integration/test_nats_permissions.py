"""One NATS user per service, on a real nats-server with the permissions production uses.

What a service may not do is tried as that service's user: a violation is what nats-server
answers (nats-py reports it to the connection's error callback, and a JetStream request for
a refused subject gets no answer). What a service needs is covered by the e2e tests, whose
services all sign in as their own users (tests/e2e/conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig

from hub_common import nats_permissions
from hub_common.bus import connection_options, publish_event
from hub_common.events import EVENT_TYPES, Actor, ClientRemoved, CompanySnapshot, new_envelope
from hub_common.history import read_dead_letters
from hub_common.local_nats import LocalNatsServer
from hub_common.nats_permissions import FETCHER, GATEWAY, INVITATIONS, OPERATOR, REGISTRY, SERVICES, durables_of
from hub_common.streams import (
    DEAD_LETTER_STREAM,
    EVENTS_STREAM,
    FETCHER_CONSUMER,
    GATEWAY_EVENTS_CONSUMER,
    RECORD_STREAMS,
    DeliveryLimits,
    StreamLimits,
    Topology,
    await_topology,
    buckets,
    declare_topology,
    stream_configs,
)


@dataclass
class SignedIn:
    connection: Client
    violations: list[str]

    async def refused(self, subject: str) -> bool:
        """Whether a plain publish to ``subject`` was refused as a permissions violation."""
        self.violations.clear()
        await self.connection.publish(subject, b"{}")
        await self.connection.flush()
        for _ in range(40):
            if any(subject.lower() in violation for violation in self.violations):
                return True
            await asyncio.sleep(0.05)
        return False

    async def subscribe_refused(self, subject: str) -> bool:
        self.violations.clear()
        subscription = await self.connection.subscribe(subject)
        await self.connection.flush()
        for _ in range(40):
            if any("subscription" in violation and subject.lower() in violation for violation in self.violations):
                return True
            await asyncio.sleep(0.05)
        await subscription.unsubscribe()
        return False


@dataclass(frozen=True)
class GuardedBroker:
    url: str
    passwords: dict[str, str]

    @asynccontextmanager
    async def signed_in(self, user: str) -> AsyncIterator[SignedIn]:
        violations: list[str] = []
        options = connection_options(self.url, name=user)

        async def on_error(error: Exception) -> None:
            # nats-py reports nats-server's error in lower case, subject included.
            violations.append(str(error).lower())

        options["error_cb"] = on_error
        connection = await nats.connect(**options, user=user, password=self.passwords[user])
        try:
            yield SignedIn(connection, violations)
        finally:
            await connection.close()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardedBroker]:
    passwords = {user: secrets.token_urlsafe(16) for user in nats_permissions.USERS}
    config = nats_permissions.authorization_conf(passwords)
    with LocalNatsServer(tmp_path_factory.mktemp("permissions"), config=config) as server:
        yield GuardedBroker(server.url, passwords)


def test_every_event_has_its_publishers_and_every_service_a_user() -> None:
    assert set(nats_permissions.EVENT_PUBLISHERS) == set(EVENT_TYPES)
    assert all(nats_permissions.EVENT_PUBLISHERS.values())
    assert set(nats_permissions.ACCESS) == set(SERVICES)


async def test_no_anonymous_client_and_no_wrong_password(guarded: GuardedBroker) -> None:
    with pytest.raises(nats.errors.Error):
        await nats.connect(guarded.url, allow_reconnect=False, connect_timeout=2)
    with pytest.raises(nats.errors.Error):
        await nats.connect(
            guarded.url, user=FETCHER, password=guarded.passwords[GATEWAY], allow_reconnect=False, connect_timeout=2
        )


@pytest.fixture
def empty_guarded(tmp_path: Path) -> Iterator[GuardedBroker]:
    """A guarded broker of its own, with no stream yet."""
    passwords = {user: secrets.token_urlsafe(16) for user in nats_permissions.USERS}
    with LocalNatsServer(tmp_path / "nats", config=nats_permissions.authorization_conf(passwords)) as server:
        yield GuardedBroker(server.url, passwords)


async def test_only_the_registry_declares_the_topology_and_the_others_wait_for_it(
    empty_guarded: GuardedBroker,
) -> None:
    """On an empty broker a service started before the registry creates nothing: it waits,
    then binds what the registry declared, all without a violation."""
    async with empty_guarded.signed_in(FETCHER) as fetcher:
        js = fetcher.connection.jetstream()
        waiting = asyncio.create_task(await_topology(js, Topology(), consumers=durables_of(FETCHER)))
        await asyncio.sleep(1.5)
        assert not waiting.done()
        assert await fetcher.refused(f"$JS.API.STREAM.CREATE.{EVENTS_STREAM}")
        assert await fetcher.refused(f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.{FETCHER_CONSUMER.durable}")
        fetcher.violations.clear()
        async with empty_guarded.signed_in(REGISTRY) as registry:
            await declare_topology(registry.connection.jetstream(), patience_seconds=5)
            assert registry.violations == []
        await asyncio.wait_for(waiting, timeout=10)
        assert fetcher.violations == []
    for service in (INVITATIONS, GATEWAY):
        async with empty_guarded.signed_in(service) as signed_in:
            await asyncio.wait_for(
                await_topology(signed_in.connection.jetstream(), Topology(), consumers=durables_of(service)), 10
            )
            assert signed_in.violations == [], service


async def test_a_service_cannot_widen_its_own_durable_and_waits_for_its_settings(guarded: GuardedBroker) -> None:
    """A consumer's create is also its update: a fetcher that could create its durable could
    filter it on ``hub.>`` and read every firm's events. And a fetcher whose delivery
    settings differ from the durable's does not pull it (it would dead-letter on its own
    count, not the server's): it waits for the registry to declare them."""
    async with guarded.signed_in(OPERATOR) as operator:
        await declare_topology(operator.connection.jetstream(), patience_seconds=5)
    widened = replace(FETCHER_CONSUMER, filter_subjects=("hub.>",)).config()
    async with guarded.signed_in(FETCHER) as fetcher:
        js = fetcher.connection.jetstream()
        for subject in (
            f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.{FETCHER_CONSUMER.durable}",
            f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.{FETCHER_CONSUMER.durable}.hub.>",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{EVENTS_STREAM}.{FETCHER_CONSUMER.durable}",
        ):
            assert await fetcher.refused(subject), f"the fetcher may call {subject}"
        with pytest.raises(nats.errors.TimeoutError):
            await js.add_consumer(EVENTS_STREAM, widened, timeout=1)
        info = await js.consumer_info(EVENTS_STREAM, FETCHER_CONSUMER.durable)
        assert sorted(info.config.filter_subjects or []) == sorted(FETCHER_CONSUMER.filter_subjects)

        # A fraction of a second too: nats-py reads 4.1 s back as 4.099999999.
        fewer_deliveries = Topology(
            delivery=replace(DeliveryLimits(), fetcher_max_deliver=2, fetcher_ack_wait_seconds=4.1)
        )
        waiting = asyncio.create_task(await_topology(js, fewer_deliveries, consumers=durables_of(FETCHER)))
        await asyncio.sleep(1.5)
        assert not waiting.done()
        async with guarded.signed_in(REGISTRY) as registry:
            await declare_topology(registry.connection.jetstream(), fewer_deliveries, patience_seconds=5)
            await asyncio.wait_for(waiting, timeout=10)
            await declare_topology(registry.connection.jetstream(), patience_seconds=5)  # as the other tests expect it


async def test_services_publish_their_own_events_only(guarded: GuardedBroker) -> None:
    firm = uuid.uuid4()
    company = uuid.uuid4()
    async with guarded.signed_in(OPERATOR) as operator:
        await declare_topology(operator.connection.jetstream(), patience_seconds=5)
    removed = new_envelope(ClientRemoved(client_id=uuid.uuid4()), firm_id=firm, actor=Actor.service("test"))
    async with guarded.signed_in(REGISTRY) as registry:
        await publish_event(registry.connection.jetstream(), removed)
        assert registry.violations == []
        assert await registry.refused(f"hub.{firm}.company.{company}.snapshot")

    snapshot_subject = f"hub.{firm}.{CompanySnapshot.subject_template.format(company_id=company)}"
    forged = {
        FETCHER: [
            f"hub.{firm}.client.added",
            f"hub.{firm}.alert.raised",
            f"hub.{firm}.tenant.access_granted",
            f"hub.{firm}.invitation.accepted",
            "cmd.registry.client.add",
            "cmd.invitations.accept",
            "$KV.HUB_TENANT_GRANTS.anything",
            "$KV.HUB_LEASES.registry",
            "deadletter.gateway-events.anything",
            "live.anything.changes",
        ],
        GATEWAY: [
            f"hub.{firm}.client.added",
            snapshot_subject,
            f"hub.{firm}.refresh.failed",
            "$KV.HUB_TENANT_GRANTS.anything",
            "$KV.HUB_BC_SLOTS.anything",
        ],
        INVITATIONS: [
            f"hub.{firm}.client.added",
            f"hub.{firm}.tenant.access_granted",
            snapshot_subject,
            "cmd.registry.tenant.grant",
            "$KV.HUB_TENANT_GRANTS.anything",
        ],
        REGISTRY: [snapshot_subject, f"hub.{firm}.invitation.accepted", "cmd.fetcher.statements.read"],
    }
    for service, subjects in forged.items():
        async with guarded.signed_in(service) as signed_in:
            for subject in subjects:
                assert await signed_in.refused(subject), f"{service} may publish {subject}"
    async with guarded.signed_in(FETCHER) as fetcher:
        assert not await fetcher.refused(snapshot_subject)
        assert not await fetcher.refused(f"hub.{firm}.refresh.failed")
        assert not await fetcher.refused("$KV.HUB_BC_SLOTS.tenant")


async def test_replies_and_other_services_durables_are_out_of_reach(guarded: GuardedBroker) -> None:
    async with guarded.signed_in(OPERATOR) as operator:
        await declare_topology(operator.connection.jetstream(), patience_seconds=5)
    async with guarded.signed_in(FETCHER) as fetcher:
        for subject in ("_INBOX.>", "_INBOX.gateway.>", "cmd.registry.>", "hub.>", "live.*.changes"):
            assert await fetcher.subscribe_refused(subject), f"the fetcher may read {subject}"
        assert not await fetcher.subscribe_refused("_INBOX.fetcher.x")
        # Pulling the gateway's durable would take (and acknowledge) the read model's events.
        assert await fetcher.refused(f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.{GATEWAY_EVENTS_CONSUMER.durable}")
        assert await fetcher.refused(f"$JS.ACK.{EVENTS_STREAM}.{GATEWAY_EVENTS_CONSUMER.durable}.1.1.1.1.0")

    async with guarded.signed_in(GATEWAY) as gateway, guarded.signed_in(REGISTRY) as registry:
        # A command's reply reaches the gateway, which sent it, whatever inbox it names.
        async def answer(message: Msg) -> None:
            await message.respond(b"ok")

        await registry.connection.subscribe("cmd.registry.accountant.ensure", queue="registry", cb=answer)
        await registry.connection.flush()
        reply = await _request_once_heard(gateway.connection, "cmd.registry.accountant.ensure")
        assert reply.data == b"ok"
        assert gateway.violations == [] and registry.violations == []
        # ... and a registry may answer a request, but not publish to an inbox on its own.
        assert await registry.refused("_INBOX.gateway.forged")


async def _request_once_heard(connection: Client, subject: str) -> Msg:
    """nats-server 2.15 sometimes answers "no responders" to the first request after another
    connection's queue subscription to it was flushed, when the machine is busy (seen in one
    run in three of this module after others); the next request, 0.1 s later, is heard."""
    for _ in range(20):
        try:
            return await connection.request(subject, b"{}", timeout=5)
        except nats.errors.NoRespondersError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"nobody answered {subject} within 2 s")


async def test_only_the_registry_changes_the_record_streams_and_nobody_deletes_them(guarded: GuardedBroker) -> None:
    async with guarded.signed_in(OPERATOR) as operator:
        await declare_topology(operator.connection.jetstream(), patience_seconds=5)
    for service in SERVICES:
        async with guarded.signed_in(service) as signed_in:
            for stream in RECORD_STREAMS:
                for verb in ("DELETE", "PURGE"):
                    assert await signed_in.refused(f"$JS.API.STREAM.{verb}.{stream}"), f"{service} may {verb} {stream}"
                assert await signed_in.refused(f"$JS.API.STREAM.MSG.DELETE.{stream}"), service
                refused = await signed_in.refused(f"$JS.API.STREAM.UPDATE.{stream}")
                assert refused == (service != REGISTRY), f"{service} UPDATE {stream}"

    # A service with other retention settings than the registry's uses the streams as they are.
    shorter = Topology(streams=replace(StreamLimits(), audit_max_age_seconds=86400))
    events_config = next(config for config in stream_configs(shorter.streams) if config.name == EVENTS_STREAM)
    async with guarded.signed_in(FETCHER) as fetcher:
        js = fetcher.connection.jetstream()
        before = (await js.stream_info(EVENTS_STREAM)).config
        await asyncio.wait_for(await_topology(js, shorter, consumers=durables_of(FETCHER)), 10)
        assert fetcher.violations == []
        assert (await js.stream_info(EVENTS_STREAM)).config.max_age == before.max_age
    async with guarded.signed_in(REGISTRY) as registry:
        js = registry.connection.jetstream()
        await declare_topology(js, shorter, patience_seconds=5)
        assert (await js.stream_info(EVENTS_STREAM)).config.max_age == events_config.max_age
        await declare_topology(js, patience_seconds=5)  # as the other tests expect it


async def test_a_service_creates_no_durable_or_other_consumer_and_changes_no_stream(guarded: GuardedBroker) -> None:
    """A consumer's create is also its update, and nats-server does not check a push
    consumer's deliver subject against its creator's permissions: any consumer could deliver
    stored messages to the registry's command subjects. A stream's update could add any
    subject to it (a command's, another service's inbox) and so capture it."""
    async with guarded.signed_in(OPERATOR) as operator:
        await declare_topology(operator.connection.jetstream(), patience_seconds=5)
    topology_streams = [config.name for config in stream_configs(StreamLimits())] + [
        f"KV_{bucket.name}" for bucket in buckets(StreamLimits())
    ]
    async with guarded.signed_in(FETCHER) as fetcher:
        for subject in (
            f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}",
            f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.registry",
            f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.stolen.hub.>",
            "$JS.API.CONSUMER.CREATE.KV_HUB_TENANT_GRANTS",
            "$JS.API.CONSUMER.DURABLE.CREATE.HUB_EVENTS.stolen",
            *(f"$JS.API.STREAM.{verb}.{stream}" for stream in topology_streams for verb in ("UPDATE", "DELETE")),
        ):
            assert await fetcher.refused(subject), f"the fetcher may call {subject}"
        js = fetcher.connection.jetstream()
        with pytest.raises(nats.errors.TimeoutError):
            await js.add_consumer(EVENTS_STREAM, ConsumerConfig(deliver_subject="cmd.registry.tenant.grant"), timeout=1)
        # Its own durable it may see.
        assert not await fetcher.refused(f"$JS.API.CONSUMER.INFO.{EVENTS_STREAM}.fetcher")
    async with guarded.signed_in(GATEWAY) as gateway:
        # Check Errors reads its firm's dead letters one get at a time: a consumer of its own
        # could deliver what the gateway wrote there (its own dead letters) to a grant's key.
        firm = uuid.uuid4()
        assert await gateway.refused(f"$JS.API.CONSUMER.CREATE.{DEAD_LETTER_STREAM}")
        assert await gateway.refused(f"$JS.API.CONSUMER.CREATE.{DEAD_LETTER_STREAM}.stolen")
        gateway.violations.clear()
        js = gateway.connection.jetstream()
        # What any service may write there that is no record is left out, not the rest.
        for junk in (b"", b"not json", b"[1]", json.dumps({"subject": f"hub.{firm}.client.added"}).encode()):
            await js.publish(f"deadletter.gateway-events.{firm}", junk)
        record = {
            "consumer": "gateway-events",
            "stream": EVENTS_STREAM,
            "stream_sequence": 7,
            "subject": f"hub.{firm}.client.added",
            "num_delivered": 1,
            "error": "test",
            "dead_lettered_at": "2026-12-06T01:00:00+00:00",
        }
        await js.publish(f"deadletter.gateway-events.{firm}", json.dumps(record).encode())
        read = [letter async for letter in read_dead_letters(js, firm_id=firm)]
        assert [letter["subject"] for letter in read] == [f"hub.{firm}.client.added"]
        assert gateway.violations == []
    async with guarded.signed_in(REGISTRY) as registry, guarded.signed_in(INVITATIONS) as invitations:
        assert await registry.refused("$KV.HUB_LEASES.invitations")
        assert await invitations.refused("$KV.HUB_LEASES.registry")
        assert not await registry.refused("$KV.HUB_LEASES.registry")
