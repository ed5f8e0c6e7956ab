"""Compare-and-set on KV answers alike on one server and on a replicated bucket."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType

from hub_common import kv
from hub_common.bus import connect
from hub_common.local_nats import LocalNatsCluster


@pytest.fixture(params=["one server", "three replicas"])
async def bucket_connection(
    request: pytest.FixtureRequest, nats_url: str, nats_cluster: LocalNatsCluster
) -> tuple[Client, int]:
    if request.param == "one server":
        return await connect(nats_url, name="kv-test"), 1
    return await connect(nats_cluster.url, name="kv-test"), 3


async def _led(js: JetStreamContext, stream: str) -> None:
    """Until a new replicated stream has elected its leader: its creation answers before,
    and a write meanwhile has no responder (the hub's own callers wait and try again)."""
    deadline = time.monotonic() + 30
    while True:
        info = await js.stream_info(stream)
        if info.cluster is None or info.cluster.leader:
            return
        assert time.monotonic() < deadline, f"{stream} elected no leader"
        await asyncio.sleep(0.1)


async def test_create_update_and_delete_tell_a_lost_race(bucket_connection: tuple[Client, int]) -> None:
    connection, replicas = bucket_connection
    js = connection.jetstream()
    name = f"TEST_KV_{uuid.uuid4().hex[:8]}"
    bucket = await js.create_key_value(
        KeyValueConfig(bucket=name, history=1, storage=StorageType.FILE, replicas=replicas)
    )
    try:
        await _led(js, f"KV_{name}")
        first = await kv.create(bucket, "lease", b"a")
        assert first is not None
        assert await kv.create(bucket, "lease", b"b") is None, "a held key is not taken twice"
        assert await kv.update(bucket, "lease", b"b", last=first + 100) is None, "a stale revision loses"
        second = await kv.update(bucket, "lease", b"a", last=first)
        assert second is not None and second > first
        assert await kv.delete(bucket, "lease", last=first) is False, "only the holder's revision deletes"
        assert await kv.delete(bucket, "lease", last=second) is True
        # After a delete the key holds a tombstone: creating it again must work.
        third = await kv.create(bucket, "lease", b"c")
        assert third is not None
        assert (await bucket.get("lease")).value == b"c"
    finally:
        await js.delete_key_value(name)
        await connection.close()
