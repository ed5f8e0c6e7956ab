"""A real NATS JetStream cluster on loopback: three nats-server nodes routed to each other.

Each node keeps its own file store and ports, so a test can kill one and start it again
as the same member. The cluster is ready once JetStream has a meta leader and answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import nats.errors
import pytest
from nats.aio.client import Client

from hub_common.bus import connect
from hub_common.local_nats import LocalNatsCluster


async def wait_for_jetstream(url: str, timeout: float = 30) -> None:
    """Until the cluster has elected its JetStream meta leader and answers account info."""
    connection = await connect(url, name="cluster-test-probe")
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                await connection.jetstream().account_info()
                return
            except (nats.errors.Error, TimeoutError) as error:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the cluster's JetStream did not answer within {timeout:.0f} s") from error
                await asyncio.sleep(0.2)
    finally:
        await connection.close()


@pytest.fixture(scope="package")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNatsCluster]:
    cluster = LocalNatsCluster(tmp_path_factory.mktemp("nats-cluster")).start()
    try:
        asyncio.run(wait_for_jetstream(cluster.url))
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def cluster_connection(nats_cluster: LocalNatsCluster) -> AsyncIterator[Client]:
    connection = await connect(nats_cluster.url, name="cluster-test")
    yield connection
    await connection.close()
