"""Stream replicas are a setting: every process reconciles them at start, up or down."""

from __future__ import annotations

from nats.aio.client import Client

from hub_common.streams import CONSUMERS, StreamLimits, Topology, buckets, declare_topology, stream_configs
from tests.faults.ledger import wait_until


def _replicas(limits: StreamLimits) -> Topology:
    return Topology(streams=limits)


async def test_streams_buckets_and_consumers_take_the_configured_replica_count(cluster_connection: Client) -> None:
    js = cluster_connection.jetstream()
    single, triple = StreamLimits(stream_replicas=1), StreamLimits(stream_replicas=3)

    await declare_topology(js, _replicas(single))
    for config in stream_configs(single):
        assert config.name is not None
        assert (await js.stream_info(config.name)).config.num_replicas == 1

    # A deployment that grows from one node to three changes one setting and restarts.
    await declare_topology(js, _replicas(triple))
    streams = [config.name for config in stream_configs(triple) if config.name]
    streams += [f"KV_{bucket.name}" for bucket in buckets(triple)]
    for stream in streams:
        assert (await js.stream_info(stream)).config.num_replicas == 3, stream

    async def every_copy_placed() -> bool:
        # The new peers join in the background; each stream and durable then lists two.
        for stream in streams:
            cluster = (await js.stream_info(stream)).cluster
            if cluster is None or len(cluster.replicas or []) != 2:
                return False
        for spec in CONSUMERS:
            # A durable follows its stream's replica count.
            cluster = (await js.consumer_info(spec.stream, spec.durable)).cluster
            if cluster is None or len(cluster.replicas or []) != 2:
                return False
        return True

    await wait_until("every stream, bucket and durable has three copies", every_copy_placed, timeout=30)

    # Back down (a cluster shrunk for a migration): the same reconciliation.
    await declare_topology(js, _replicas(single))
    for config in stream_configs(single):
        assert config.name is not None
        assert (await js.stream_info(config.name)).config.num_replicas == 1
    await declare_topology(js, _replicas(triple))
