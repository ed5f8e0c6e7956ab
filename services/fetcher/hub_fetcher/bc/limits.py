"""BC's per-identity limits: at most 5 requests at once and 6,000 per 5 minutes.

Both hold across every fetcher process together. A request first takes one of the
tenant's 5 slots, leased in a NATS KV bucket (``SharedTenantSlots``); a crashed process's
leases expire on their own. It is counted in the tenant's request window, kept in another
bucket (``SharedRequestWindow``), so one process reading a large environment may use the
whole window rather than its share of it. When BC throttles the identity (a 429), the
wait goes into a third bucket, so every process holds the tenant's requests back, not only
the one that was told. (A 503's Retry-After is about one environment, being upgraded: it
delays only the retry of the read that met it, BusinessCentral._raise_for_error.) A single process without the
buckets (tests, tools) keeps both limits itself (``TenantLimiter``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from hub_common import kv
from hub_common.bus import BROKER_UNAVAILABLE
from hub_common.logging import get_logger
from hub_common.streams import BC_HOLD_OFF_MAX_SECONDS
from hub_common.tasks import cancel_and_wait

logger = get_logger(__name__)

# How long a slot-taker waits before asking a broker that did not answer again.
BROKER_RETRY_SECONDS = 0.5
# The longest a tenant's throttling holds its other reads back: a Retry-After beyond it
# (or a hostile one) is the retry's business, not every read's.
MAX_HOLD_OFF_SECONDS = BC_HOLD_OFF_MAX_SECONDS
# How long a process trusts what it last read of a tenant's shared hold-off: a wait another
# process was told of reaches this one within it, at one KV read per tenant per interval
# instead of one per request.
HOLD_OFF_RECHECK_SECONDS = 1.0
# The slices of a tenant's shared request window (SharedRequestWindow), and how much of BC's
# limit they hand out (the rest absorbs clocks that differ between processes).
WINDOW_SLICE_SECONDS = 30.0
WINDOW_SHARE_USED = 0.9
# Writers racing for one tenant's record: after this many lost races the wait stays local.
_HOLD_OFF_WRITE_ATTEMPTS = 3


class _TenantBudget:
    def __init__(self, concurrent: int, per_window: int, window_seconds: float) -> None:
        self.semaphore = asyncio.Semaphore(concurrent)
        self.per_window = per_window
        self.window_seconds = window_seconds
        self.started: deque[float] = deque()
        self.lock = asyncio.Lock()
        # When BC last asked this identity to slow down: no request starts before it.
        self.held_off_until = 0.0

    async def wait_for_window(self, weight: int) -> None:
        """Wait until ``weight`` more requests fit in the sliding window, then count them."""
        weight = min(weight, self.per_window)
        async with self.lock:
            while True:
                now = time.monotonic()
                while self.started and now - self.started[0] >= self.window_seconds:
                    self.started.popleft()
                if len(self.started) + weight <= self.per_window:
                    self.started.extend([now] * weight)
                    return
                await asyncio.sleep(self.window_seconds - (now - self.started[0]))


class ConcurrencySlots(Protocol):
    def slot(self, tenant: str) -> AbstractAsyncContextManager[None]: ...

    async def hold_off(self, tenant: str, seconds: float) -> None: ...


class SharedTenantSlots:
    """A tenant-wide semaphore every fetcher process shares, held as leases in NATS KV.

    A lease lives for the bucket's TTL (``HUB_BC_SLOT_LEASE_SECONDS``) unless its holder
    renews it: while a request runs, its slot is rewritten every third of the lease. So the
    lease can be short, and a fetcher that dies (SIGKILL) frees its slots within one lease
    instead of holding the tenant back for as long as the longest request could take.
    """

    def __init__(
        self,
        bucket: KeyValue,
        hold_offs: KeyValue,
        *,
        slots: int = 5,
        owner: str | None = None,
        lease_seconds: float = 120.0,
    ) -> None:
        self._bucket = bucket
        self._hold_offs = hold_offs
        self._slots = slots
        self._owner = (owner or f"fetcher-{uuid.uuid4()}").encode()
        self._renew_every = lease_seconds / 3
        # tenant -> (when its record was last read, when the wait it named ends), both
        # time.monotonic()
        self._held_off: dict[str, tuple[float, float]] = {}

    @staticmethod
    def _key(tenant: str, index: int) -> str:
        # Tenants are validated to [A-Za-z0-9.-], which KV keys accept as they are.
        return f"tenant.{tenant}.slot{index}"

    async def hold_off(self, tenant: str, seconds: float) -> None:
        """BC asked this identity to wait: no process starts a request of the tenant before
        then. The record holds a wall-clock time, as processes share no monotonic clock; a
        reader turns it into a wait of at most MAX_HOLD_OFF_SECONDS, and the bucket's TTL
        (as long) removes it, so a clock that is off costs at most that, once."""
        until = time.time() + min(seconds, MAX_HOLD_OFF_SECONDS)
        key = _hold_off_key(tenant)
        try:
            for _ in range(_HOLD_OFF_WRITE_ATTEMPTS):
                try:
                    entry = await self._hold_offs.get(key)
                except nats.js.errors.KeyNotFoundError:
                    if await kv.create(self._hold_offs, key, _wall_clock(until)) is not None:
                        return
                    continue
                if until <= _parse_wall_clock(entry.value):
                    return  # a longer wait is on record already
                assert entry.revision is not None
                # Compare-and-set: a shorter wait written at the same time never replaces it.
                if await kv.update(self._hold_offs, key, _wall_clock(until), last=entry.revision) is not None:
                    return
        except BROKER_UNAVAILABLE as error:
            # This process still waits (TenantLimiter); the others learn of it at their next 429.
            logger.warning("tenant hold-off not shared", tenant=tenant, error=repr(error)[:200])

    async def _wait_while_held_off(self, tenant: str) -> None:
        now = time.monotonic()
        read_at, until = self._held_off.get(tenant, (-math.inf, 0.0))
        if now - read_at >= HOLD_OFF_RECHECK_SECONDS:
            try:
                entry = await self._hold_offs.get(_hold_off_key(tenant))
                wait = min(_parse_wall_clock(entry.value) - time.time(), MAX_HOLD_OFF_SECONDS)
            except nats.js.errors.KeyNotFoundError:
                wait = 0.0
            except BROKER_UNAVAILABLE:
                wait = 0.0  # taking a slot below waits for the broker
            # What was read replaces what was known: a record that expired ends the wait.
            until = now + max(wait, 0.0)
            self._held_off[tenant] = (now, until)
        if (wait := until - now) > 0:
            await asyncio.sleep(wait)

    async def _try_take(self, tenant: str) -> tuple[str, int] | None:
        for index in random.sample(range(self._slots), self._slots):
            key = self._key(tenant, index)
            try:
                revision = await kv.create(self._bucket, key, self._owner)
            except nats.js.errors.KeyNotFoundError:
                continue  # taken and released while create looked at it
            if revision is None:
                continue  # taken
            return key, revision
        return None

    async def _renew(self, key: str, revision: list[int], released: asyncio.Event) -> None:
        while not released.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(released.wait(), self._renew_every)
            if released.is_set():
                return
            try:
                renewed = await kv.update(self._bucket, key, self._owner, last=revision[0])
            except nats.errors.Error as error:  # the broker is away: the next beat tries again
                logger.warning("slot lease not renewed", key=key, error=repr(error)[:200])
                continue
            if renewed is None:
                logger.warning("slot lease lost before its request ended", key=key)
                return
            revision[0] = renewed

    @asynccontextmanager
    async def slot(self, tenant: str) -> AsyncIterator[None]:
        await self._wait_while_held_off(tenant)
        wait = 0.005
        told_broker_away = False
        while True:
            try:
                taken = await self._try_take(tenant)
            except BROKER_UNAVAILABLE as error:
                # A restart or a cluster electing the bucket's leader: wait for it (the
                # refresh's deadline bounds the wait) rather than fail the refresh.
                if not told_broker_away:
                    told_broker_away = True
                    logger.warning("slot bucket not answering; waiting", tenant=tenant, error=repr(error)[:200])
                await asyncio.sleep(BROKER_RETRY_SECONDS * (1 + random.random()))
                continue
            if taken is not None:
                break
            await asyncio.sleep(wait * (1 + random.random()))
            wait = min(wait * 2, 0.1)
        key, first_revision = taken
        revision = [first_revision]
        released = asyncio.Event()
        renewing = asyncio.create_task(self._renew(key, revision, released))
        try:
            yield
        finally:
            released.set()
            await cancel_and_wait(renewing)
            # Only our own lease: if it expired and another process took the slot, keep theirs.
            # A lease we fail to release expires by itself (the bucket's TTL).
            with contextlib.suppress(nats.errors.Error):
                await kv.delete(self._bucket, key, last=revision[0])


def _wall_clock(moment: float) -> bytes:
    return f"{moment:.3f}".encode()


def _parse_wall_clock(value: bytes | None) -> float:
    try:
        return float((value or b"0").decode())
    except ValueError:
        return 0.0  # not the hub's writing: no reason to stop reading the tenant


class SharedRequestWindow:
    """A tenant's BC request window, counted in NATS KV by every fetcher process together.

    BC allows an identity 6,000 requests in any 5 minutes. Counting each request in a
    sliding window shared by processes would take a record per request; instead time is
    cut into slices (30 s), and any 5 minutes overlap at most 11 of them: each slice allows
    90 % of BC's limit shared by those 11 (490 of 6,000), so the processes together stay
    under it however their requests fall, with a tenth in hand for processes whose clocks
    differ (slices are cut by each one's wall clock, so one that is off counts a moment in
    another slice). A tenant read without pause gets 4,900 requests in 5 minutes. A request
    is counted as it is about to go out, holding its slot (``TenantLimiter.slot``), and adds
    its weight to its slice's count by compare-and-set; when the slice is full it waits
    for the next.
    """

    def __init__(
        self,
        bucket: KeyValue,
        *,
        per_window: int = 6000,
        window_seconds: float = 300.0,
        slice_seconds: float = WINDOW_SLICE_SECONDS,
    ) -> None:
        self._bucket = bucket
        self._slice_seconds = slice_seconds
        slices_in_a_window = math.ceil(window_seconds / slice_seconds) + 1
        self.per_slice = max(1, math.floor(per_window * WINDOW_SHARE_USED / slices_in_a_window))

    async def take(self, tenant: str, weight: int) -> None:
        """Counts ``weight`` requests of the tenant, once the current slice has room."""
        weight = min(weight, self.per_slice)
        told_broker_away = False
        while True:
            now = time.time()
            index = math.floor(now / self._slice_seconds)
            try:
                if await self._add(f"tenant.{tenant}.slice{index}", weight):
                    return
            except BROKER_UNAVAILABLE as error:
                # As for the slots: wait for the broker (the refresh's deadline bounds it).
                if not told_broker_away:
                    told_broker_away = True
                    logger.warning("window bucket not answering; waiting", tenant=tenant, error=repr(error)[:200])
                await asyncio.sleep(BROKER_RETRY_SECONDS * (1 + random.random()))
                continue
            # Full: the next slice, the processes spread over its first second.
            await asyncio.sleep((index + 1) * self._slice_seconds - now + random.random())

    async def wait_for_room(self, tenant: str, weight: int) -> None:
        """Waits, without counting, until the current slice has room for ``weight``: done
        before taking a slot, so a full slice is waited out holding none (the requests
        waiting for one would otherwise poll the slots' bucket all that time)."""
        weight = min(weight, self.per_slice)
        while True:
            now = time.time()
            index = math.floor(now / self._slice_seconds)
            try:
                entry = await self._bucket.get(f"tenant.{tenant}.slice{index}")
                used = _parse_count(entry.value)
            except nats.js.errors.KeyNotFoundError:
                return
            except BROKER_UNAVAILABLE:
                return  # take() waits for the broker
            if used + weight <= self.per_slice:
                return
            await asyncio.sleep((index + 1) * self._slice_seconds - now + random.random())

    async def _add(self, key: str, weight: int) -> bool:
        """Whether the slice had room for ``weight`` (and now counts it). A lost race means
        another request was counted: read again, until it fits or the slice is full."""
        while True:
            try:
                entry = await self._bucket.get(key)
            except nats.js.errors.KeyNotFoundError:
                if await kv.create(self._bucket, key, str(weight).encode()) is not None:
                    return True
                continue
            used = _parse_count(entry.value)
            if used + weight > self.per_slice:
                return False
            assert entry.revision is not None
            if await kv.update(self._bucket, key, str(used + weight).encode(), last=entry.revision) is not None:
                return True
            await asyncio.sleep(random.random() * 0.01)  # lost to another: not all at once again


def _parse_count(value: bytes | None) -> int:
    try:
        return max(0, int((value or b"0").decode()))
    except ValueError:
        return 0  # not the hub's writing: counted from nothing rather than never read again


def _hold_off_key(tenant: str) -> str:
    # Tenants are validated to [A-Za-z0-9.-], which KV keys accept as they are.
    return f"tenant.{tenant}"


class TenantLimiter:
    """BC's limits for one process: with ``shared_slots`` and ``shared_window`` (the
    fetchers) they hold across every process; without, within this one."""

    def __init__(
        self,
        *,
        concurrent: int = 5,
        per_window: int = 6000,
        window_seconds: float = 300.0,
        shared_slots: ConcurrencySlots | None = None,
        shared_window: SharedRequestWindow | None = None,
    ) -> None:
        self._shared_slots = shared_slots
        self._shared_window = shared_window
        self._concurrent = concurrent
        self._per_window = per_window
        self._window_seconds = window_seconds
        self._budgets: dict[str, _TenantBudget] = {}

    def _budget(self, tenant: str) -> _TenantBudget:
        budget = self._budgets.get(tenant)
        if budget is None:
            budget = _TenantBudget(self._concurrent, self._per_window, self._window_seconds)
            self._budgets[tenant] = budget
        return budget

    async def hold_off(self, tenant: str, seconds: float) -> None:
        """BC throttled the identity (a 429, with or without Retry-After): the tenant's next
        requests wait this long, in every process where the slots are shared."""
        budget = self._budget(tenant)
        budget.held_off_until = max(budget.held_off_until, time.monotonic() + min(seconds, MAX_HOLD_OFF_SECONDS))
        if self._shared_slots is not None:
            await self._shared_slots.hold_off(tenant, seconds)

    @asynccontextmanager
    async def slot(self, tenant: str, weight: int = 1) -> AsyncIterator[None]:
        """One request in flight; ``weight`` is how many BC counts (a $batch counts each part)."""
        budget = self._budget(tenant)
        async with budget.semaphore:
            if (wait := budget.held_off_until - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            if self._shared_slots is None or self._shared_window is None:
                await budget.wait_for_window(weight)
            if self._shared_slots is None:
                yield
                return
            if self._shared_window is not None:
                await self._shared_window.wait_for_room(tenant, weight)
            async with self._shared_slots.slot(tenant):
                # Counted once the slot (and any wait BC asked of every process) is had: a
                # request counted earlier could reach BC in a later slice than it was counted in.
                if self._shared_window is not None:
                    await self._shared_window.take(tenant, weight)
                yield
