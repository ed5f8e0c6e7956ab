"""BC's limits hold across processes: 5 concurrent requests (leased slots in NATS KV) and
6,000 in 5 minutes (a window counted in NATS KV)."""

from __future__ import annotations

import asyncio
import time

import nats
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from hub_common.streams import (
    BC_HOLD_OFFS_BUCKET,
    BC_SLOTS_BUCKET,
    BC_WINDOWS_BUCKET,
    StreamLimits,
    Topology,
    declare_topology,
)
from hub_fetcher.bc.limits import HOLD_OFF_RECHECK_SECONDS, SharedRequestWindow, SharedTenantSlots, TenantLimiter


async def test_two_processes_never_hold_more_than_five_slots(nats_url: str, jetstream: JetStreamContext) -> None:
    # Two connections stand for two fetcher processes, each with its own limiter.
    connections = [await nats.connect(nats_url) for _ in range(2)]
    limiters = [TenantLimiter(shared_slots=await _shared_slots(c.jetstream())) for c in connections]
    holding = 0
    most = 0
    done = 0

    async def request(limiter: TenantLimiter) -> None:
        nonlocal holding, most, done
        async with limiter.slot("contoso.onmicrosoft.com"):
            holding += 1
            most = max(most, holding)
            await asyncio.sleep(0.01)
            holding -= 1
        done += 1

    await asyncio.gather(*(request(limiters[i % 2]) for i in range(60)))
    for connection in connections:
        await connection.close()
    assert done == 60
    assert most == 5, "the slots are used fully but never exceeded"


async def test_a_crashed_holder_does_not_block_forever(jetstream: JetStreamContext) -> None:
    bucket = await jetstream.key_value(BC_SLOTS_BUCKET)
    slots = SharedTenantSlots(bucket, await jetstream.key_value(BC_HOLD_OFFS_BUCKET), slots=1)
    # A process that died holding the only slot: its key stays until the lease expires.
    await bucket.create("tenant.fabrikam.com.slot0", b"dead-process")
    waiting = asyncio.create_task(_take(slots, "fabrikam.com"))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await bucket.delete("tenant.fabrikam.com.slot0")  # what the lease expiry does
    await asyncio.wait_for(waiting, timeout=5)


async def _shared_slots(js: JetStreamContext) -> SharedTenantSlots:
    return SharedTenantSlots(await js.key_value(BC_SLOTS_BUCKET), await js.key_value(BC_HOLD_OFFS_BUCKET))


async def _take(slots: SharedTenantSlots, tenant: str) -> None:
    async with slots.slot(tenant):
        pass


async def test_a_live_holder_keeps_its_slot_past_the_lease_and_a_dead_one_loses_it(nats_url: str) -> None:
    """With a 3-second lease: a request running 5 s keeps its slot (renewed); a holder that
    died frees it within about one lease."""
    connection = await nats.connect(nats_url)
    js = connection.jetstream()
    try:
        await declare_topology(js, Topology(streams=StreamLimits(bc_slot_lease_seconds=3)))
        bucket = await js.key_value(BC_SLOTS_BUCKET)
        live = SharedTenantSlots(bucket, await js.key_value(BC_HOLD_OFFS_BUCKET), slots=1, lease_seconds=3)
        other = SharedTenantSlots(bucket, await js.key_value(BC_HOLD_OFFS_BUCKET), slots=1, lease_seconds=3)
        async with live.slot("northwind.example"):
            waiting = asyncio.create_task(_take(other, "northwind.example"))
            await asyncio.sleep(5)
            assert not waiting.done(), "the slot was taken from a request still running"
        await asyncio.wait_for(waiting, timeout=5)

        await bucket.create("tenant.tailspin.example.slot0", b"a fetcher that was killed")
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(_take(other, "tailspin.example"), timeout=10)
        assert asyncio.get_running_loop().time() - started < 6
    finally:
        await declare_topology(js)
        await connection.close()


async def test_a_wait_bc_asked_of_one_process_holds_every_process_back(
    nats_url: str, jetstream: JetStreamContext
) -> None:
    """BC's Retry-After is for the identity, which every fetcher process shares: the others
    hold the tenant's requests back too (once they next look, within a second), until it ends."""
    connections = [await nats.connect(nats_url) for _ in range(2)]
    try:
        told, other = [TenantLimiter(shared_slots=await _shared_slots(c.jetstream())) for c in connections]
        tenant = "adatum.example"
        async with other.slot(tenant):
            pass  # the other process has read the tenant before
        await told.hold_off(tenant, 3)
        await asyncio.sleep(HOLD_OFF_RECHECK_SECONDS + 0.1)
        started = time.monotonic()
        async with other.slot(tenant):
            waited = time.monotonic() - started
        assert 1.3 <= waited <= 2.5, f"the other process waited {waited:.2f} s of the 3 s BC asked"
        started = time.monotonic()
        async with other.slot("another-tenant.example"):
            assert time.monotonic() - started < 0.5, "another tenant is not held back"
        await asyncio.sleep(HOLD_OFF_RECHECK_SECONDS + 0.1)
        started = time.monotonic()
        async with other.slot(tenant):
            assert time.monotonic() - started < 0.5, "the wait ends when BC said"
    finally:
        for connection in connections:
            await connection.close()


async def test_a_wait_ends_when_its_record_does(nats_url: str, jetstream: JetStreamContext) -> None:
    """A process goes by the record as it reads it now: once the record is gone (its TTL, or
    a clock that was ahead), a wait it read earlier no longer holds its next requests."""
    connection = await nats.connect(nats_url)
    try:
        slots = await _shared_slots(jetstream)
        other = await _shared_slots(connection.jetstream())
        tenant = "wingtip.example"
        await slots.hold_off(tenant, 30)
        waiting = asyncio.create_task(_take(other, tenant))  # has read the 30 s wait
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await (await jetstream.key_value(BC_HOLD_OFFS_BUCKET)).purge(f"tenant.{tenant}")
        await asyncio.sleep(HOLD_OFF_RECHECK_SECONDS + 0.1)
        started = time.monotonic()
        await asyncio.wait_for(_take(other, tenant), timeout=5)
        assert time.monotonic() - started < 0.5
        waiting.cancel()
    finally:
        await connection.close()


async def _slice_counts(js: JetStreamContext, tenant: str) -> dict[str, int]:
    bucket = await js.key_value(BC_WINDOWS_BUCKET)
    keys = [key for key in await bucket.keys() if key.startswith(f"tenant.{tenant}.slice")]
    return {key: int((await bucket.get(key)).value or b"0") for key in keys}


async def _early_in_a_slice(slice_seconds: float) -> None:
    await asyncio.sleep(slice_seconds - time.time() % slice_seconds + 0.05)


async def test_the_request_window_holds_across_processes_and_one_process_may_use_all_of_it(
    nats_url: str, jetstream: JetStreamContext
) -> None:
    """BC counts an identity's requests whichever fetcher sends them. Split evenly, each of
    ten fetchers could send a tenant 600 of BC's 6,000 in 5 minutes, so one reading a large
    environment alone ran out its refresh's deadline; counted together, one process may use
    the whole window and all of them together never exceed it."""
    connections = [await nats.connect(nats_url) for _ in range(2)]
    try:
        # 123 requests in any 50 s: 5-second slices of 10 (90 % of 123, over 11 slices).
        windows = [
            SharedRequestWindow(
                await c.jetstream().key_value(BC_WINDOWS_BUCKET), per_window=123, window_seconds=50, slice_seconds=5
            )
            for c in connections
        ]
        assert windows[0].per_slice == 10
        limiters = [
            TenantLimiter(shared_slots=await _shared_slots(c.jetstream()), shared_window=w)
            for c, w in zip(connections, windows, strict=True)
        ]
        alone = "woodgrove.example"
        await _early_in_a_slice(5)
        for _ in range(10):
            async with limiters[0].slot(alone):
                pass
        assert list((await _slice_counts(jetstream, alone)).values()) == [10], "one process used a whole slice"

        tenant = "contoso.example"
        await asyncio.gather(*(_one_request(limiters[i % 2], tenant) for i in range(25)))
        counts = await _slice_counts(jetstream, tenant)
        assert sum(counts.values()) == 25 and max(counts.values()) <= 10, counts
        assert len(counts) >= 3
    finally:
        for connection in connections:
            await connection.close()


async def _one_request(limiter: TenantLimiter, tenant: str) -> None:
    async with limiter.slot(tenant):
        pass


async def test_a_batch_counts_as_its_parts_and_waits_for_a_slice_with_room(jetstream: JetStreamContext) -> None:
    bucket = await jetstream.key_value(BC_WINDOWS_BUCKET)
    assert SharedRequestWindow(bucket).per_slice == 490  # 90 % of BC's 6,000 in any 5 minutes, 30 s slices
    window = SharedRequestWindow(bucket, per_window=123, window_seconds=20, slice_seconds=2)  # 10 a slice
    await _early_in_a_slice(2)
    first = int(time.time() // 2)
    await window.take("fabrikam.example", 8)
    await window.take("fabrikam.example", 5)  # 8 + 5 > 10: the next slice
    counts = await _slice_counts(jetstream, "fabrikam.example")
    assert counts == {f"tenant.fabrikam.example.slice{first}": 8, f"tenant.fabrikam.example.slice{first + 1}": 5}


async def test_a_request_is_counted_in_the_slice_it_goes_out_in(jetstream: JetStreamContext) -> None:
    """Counted before waiting out a hold-off BC asked for, a request went out slices later
    than it was counted in, and the slices' bound on any 5 minutes no longer held."""
    window = SharedRequestWindow(
        await jetstream.key_value(BC_WINDOWS_BUCKET), per_window=123, window_seconds=20, slice_seconds=2
    )
    # BC told another process to wait: this one learns it as it takes a slot.
    told = TenantLimiter(shared_slots=await _shared_slots(jetstream))
    limiter = TenantLimiter(shared_slots=await _shared_slots(jetstream), shared_window=window)
    tenant = "tailspin-held.example"
    asked_in = int(time.time() // 2)
    await told.hold_off(tenant, 2.5)
    async with limiter.slot(tenant):
        pass
    [counted] = list(await _slice_counts(jetstream, tenant))
    assert int(counted.rsplit("slice", 1)[1]) > asked_in, "counted in the slice it was asked in, not sent in"


async def test_a_full_slice_is_waited_out_holding_no_slot(jetstream: JetStreamContext) -> None:
    window = SharedRequestWindow(
        await jetstream.key_value(BC_WINDOWS_BUCKET), per_window=123, window_seconds=20, slice_seconds=2
    )
    limiter = TenantLimiter(shared_slots=await _shared_slots(jetstream), shared_window=window)
    tenant = "northwind-full.example"
    await _early_in_a_slice(2)
    await window.take(tenant, 10)  # the slice is full
    waiting = asyncio.create_task(_one_request(limiter, tenant))
    await asyncio.sleep(0.5)
    slots = await jetstream.key_value(BC_SLOTS_BUCKET)
    held = [key for key in await _keys(slots) if key.startswith(f"tenant.{tenant}.")]
    assert not waiting.done() and held == [], held
    await asyncio.wait_for(waiting, timeout=5)


async def _keys(bucket: KeyValue) -> list[str]:
    try:
        return list(await bucket.keys())
    except nats.js.errors.NoKeysError:
        return []
