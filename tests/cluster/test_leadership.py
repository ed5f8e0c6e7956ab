"""The lease: exactly one holder does the duty; another takes over when it dies or stops."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass, field

from hub_common.bus import connect
from hub_common.leadership import Duty, Leadership, current_holder
from hub_common.local_nats import LocalNatsCluster
from hub_common.streams import StreamLimits, Topology, declare_topology
from tests.faults.ledger import wait_until

LEASE_SECONDS = 3.0


@dataclass
class DutyLog:
    """When each holder's duty ran: intervals that must never overlap."""

    intervals: list[tuple[str, float, float | None]] = field(default_factory=list)

    def duty(self, holder: str) -> Duty:
        async def run() -> None:
            index = len(self.intervals)
            self.intervals.append((holder, time.monotonic(), None))
            try:
                await asyncio.Event().wait()
            finally:
                name, began, _ = self.intervals[index]
                self.intervals[index] = (name, began, time.monotonic())

        return run

    def running(self) -> list[str]:
        return [holder for holder, _, ended in self.intervals if ended is None]

    def assert_never_two_at_once(self) -> None:
        closed = sorted((began, ended if ended is not None else float("inf")) for _, began, ended in self.intervals)
        for (_, first_end), (second_begin, _) in itertools.pairwise(closed):
            assert first_end <= second_begin, f"two holders at once: {self.intervals}"


async def test_one_holder_at_a_time_and_a_quick_takeover(nats_cluster: LocalNatsCluster) -> None:
    setup = await connect(nats_cluster.url, name="lease-setup")
    js = setup.jetstream()
    await declare_topology(js, Topology(streams=StreamLimits(stream_replicas=3, leader_lease_seconds=LEASE_SECONDS)))
    role = f"test-{uuid.uuid4().hex[:8]}"
    log = DutyLog()
    connections = {name: await connect(nats_cluster.url, name=name) for name in ("first", "second", "third")}
    runs = {
        name: asyncio.create_task(
            Leadership(connection.jetstream(), role, holder=name, lease_seconds=LEASE_SECONDS).run(log.duty(name))
        )
        for name, connection in connections.items()
        if name != "third"
    }
    try:

        async def one_holder() -> bool:
            return len(log.running()) == 1

        await wait_until("a holder does the duty", one_holder, timeout=10)
        await asyncio.sleep(LEASE_SECONDS * 2)  # renewals go on; nobody else starts
        assert len(log.intervals) == 1, log.intervals
        leader = log.running()[0]
        assert await current_holder(js, role) == leader

        # The leader's process loses the broker for good (as when it is killed): it cannot
        # renew, stops its duty, and the other takes over once the lease expires.
        lost_at = time.monotonic()
        await connections[leader].close()
        follower = "second" if leader == "first" else "first"

        async def follower_leads() -> bool:
            return log.running() == [follower]

        await wait_until("the other replica takes over", follower_leads, timeout=LEASE_SECONDS * 4)
        assert time.monotonic() - lost_at < LEASE_SECONDS * 2 + 1
        log.assert_never_two_at_once()

        # A clean stop hands the lease over at once, without waiting for it to expire.
        runs["third"] = asyncio.create_task(
            Leadership(connections["third"].jetstream(), role, holder="third", lease_seconds=LEASE_SECONDS).run(
                log.duty("third")
            )
        )
        await asyncio.sleep(0.5)
        assert log.running() == [follower]
        stopped_at = time.monotonic()
        runs[follower].cancel()

        async def third_leads() -> bool:
            return log.running() == ["third"]

        await wait_until("the waiting replica takes over", third_leads, timeout=LEASE_SECONDS * 2)
        assert time.monotonic() - stopped_at < LEASE_SECONDS, "a released lease is taken without waiting for expiry"
        log.assert_never_two_at_once()
    finally:
        for run in runs.values():
            run.cancel()
        await asyncio.gather(*runs.values(), return_exceptions=True)
        for connection in connections.values():
            await connection.close()
        await setup.close()
