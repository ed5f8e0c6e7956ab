"""A role's leased duties stop for sure, and hand the lease over at once, even when a duty
swallowed its cancellation (as Python 3.11's wait_for does inside nats-py; hub_common.tasks)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub_common.leadership import LeasedDuties, current_holder
from hub_common.outbox import OutboxRelay
from hub_registry.models import registry_outbox
from tests.faults.ledger import wait_until


async def test_a_duty_that_swallowed_its_cancellation_stops_and_the_lease_is_handed_over(
    registry_sessions: async_sessionmaker[AsyncSession], jetstream: JetStreamContext
) -> None:
    role = f"test-{uuid.uuid4().hex[:8]}"
    duties = LeasedDuties(role, service_name="stubborn", lease_seconds=10)
    duties.connected(OutboxRelay(registry_sessions, registry_outbox, jetstream))
    began, ended = asyncio.Event(), asyncio.Event()

    async def stubborn() -> None:
        began.set()
        with contextlib.suppress(asyncio.CancelledError):  # the cancellation wait_for lost
            await asyncio.sleep(60)
        try:
            await asyncio.sleep(60)
        finally:
            ended.set()

    duties.start(jetstream, {"stubborn": stubborn})
    await asyncio.wait_for(began.wait(), timeout=10)

    async def held() -> bool:
        return await current_holder(jetstream, role) is not None

    await wait_until("the lease is held", held, timeout=10)
    # Waited for, not timed out: a stop holds a timeout's cancellation back until it ended.
    stopping = asyncio.create_task(duties.stop())
    stopped, _ = await asyncio.wait({stopping}, timeout=10)
    assert stopped, "the stop kept waiting for a duty that had swallowed its cancellation"
    assert ended.is_set()
    # Released, not left to expire: the duty took longer than a second to end, so the stop
    # had cancelled the lease's task a second time meanwhile.
    assert await current_holder(jetstream, role) is None
