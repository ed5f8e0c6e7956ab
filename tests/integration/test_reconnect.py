"""Services never give up on the broker: the connection every process makes keeps trying
for as long as nats-server is away (nats-py's own default stops after 60 attempts, two
minutes at its 2-second wait), then carries on where it was."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import nats

from hub_common.bus import Reconnections, connection_options
from hub_common.local_nats import LocalNatsServer
from hub_gateway.dashboard.live import LiveUpdates

# Attempts every 0.05 s for 6 s: about 120, twice what nats-py alone would make.
WAIT_SECONDS = 0.05
AWAY_SECONDS = 6.0


async def test_a_connection_outlives_a_long_broker_outage(tmp_path: Path) -> None:
    server = LocalNatsServer(tmp_path / "nats").start()
    options = connection_options(server.url, name="reconnect-test", reconnect_wait_seconds=WAIT_SECONDS)
    connection = await nats.connect(**options)
    try:
        js = connection.jetstream()
        await js.add_stream(name="OUTAGE", subjects=["outage.>"])
        await js.publish("outage.before", b"1")
        server.kill()
        await asyncio.sleep(AWAY_SECONDS)
        assert not connection.is_closed, "the connection gave up while the broker was away"
        server.start()  # the same port and file store
        for _ in range(200):
            if connection.is_connected:
                break
            await asyncio.sleep(0.05)
        assert connection.is_connected
        await js.publish("outage.after", b"2")
        assert (await js.stream_info("OUTAGE")).state.messages == 2
    finally:
        await connection.close()
        server.stop()


async def test_open_pages_read_their_rows_again_after_the_gateway_was_away_from_nats(tmp_path: Path) -> None:
    """Live notices travel on core NATS, which keeps nothing: those sent while a gateway was
    away are lost, so each of its open pages is told to read its rows again."""
    server = LocalNatsServer(tmp_path / "nats").start()
    reconnections = Reconnections()
    options = connection_options(
        server.url, name="live-reconnect-test", reconnect_wait_seconds=WAIT_SECONDS, reconnections=reconnections
    )
    connection = await nats.connect(**options)
    live = LiveUpdates(connection)
    await live.start()
    reconnections.listen(live.resync)
    firm_id = uuid.uuid4()
    try:
        with live.listen(firm_id) as queue:
            server.kill()
            await asyncio.sleep(0.5)
            assert queue.empty()
            server.start()
            notice = await asyncio.wait_for(queue.get(), timeout=20)
            assert notice.reload and not notice.client_ids
    finally:
        await live.stop()
        await connection.close()
        server.stop()
