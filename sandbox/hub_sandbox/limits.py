"""BC's per-identity limits: concurrent requests, the request queue and the rate window.

BC applies them per user; an app identity (service principal) counts as one user in each
tenant, so the key is (tenant id, app id):

- at most ``max_concurrent`` requests are processed at once; the next ``max_queued`` wait
  in order for a slot (after ``queue_timeout_seconds`` in the queue: 503); beyond that 429;
- at most ``window_requests`` requests per sliding ``window_seconds``; beyond that 429.

Counters per tenant (requests served, the highest concurrency seen, 429s sent) let tests
check that a client never exceeded the limits. Everything here runs on the server's event
loop, except :meth:`RequestLimiter.count_request`, which $batch calls from a worker thread
for each operation, hence the lock.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

# Not documented by Microsoft (reference §10): the sandbox's choice of BC-style code.
TOO_MANY_REQUESTS_CODE = "Application_TooManyRequests"


@dataclass
class LimitSettings:
    max_concurrent: int = 5
    max_queued: int = 95
    window_requests: int = 6000
    window_seconds: float = 300.0
    queue_timeout_seconds: float = 480.0


class Throttled(Exception):
    """A request refused by the limits: 429 (or 503 after waiting too long in the queue)."""

    def __init__(self, status: int, message: str, retry_after: int | None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass
class TenantCounters:
    requests_served: int = 0
    max_concurrency: int = 0
    throttled: int = 0
    active: int = 0
    queued: int = 0


@dataclass
class _Gate:
    active: int = 0
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    window: deque[float] = field(default_factory=deque)


Identity = tuple[uuid.UUID, str]  # (tenant id, app id)


class RequestLimiter:
    def __init__(self, settings: LimitSettings) -> None:
        self.settings = settings
        self._gates: dict[Identity, _Gate] = {}
        self._counters: dict[uuid.UUID, TenantCounters] = {}
        self._lock = threading.Lock()

    def counters(self) -> dict[uuid.UUID, TenantCounters]:
        with self._lock:
            return {tenant: dataclass_copy(c) for tenant, c in self._counters.items()}

    def reset_counters(self) -> None:
        with self._lock:
            for tenant, counters in self._counters.items():
                self._counters[tenant] = TenantCounters(active=counters.active, queued=counters.queued)
            for gate in self._gates.values():
                gate.window.clear()

    def _counter(self, tenant_id: uuid.UUID) -> TenantCounters:
        return self._counters.setdefault(tenant_id, TenantCounters())

    async def acquire(self, identity: Identity) -> None:
        """Take a processing slot, waiting in the queue if all are busy."""
        gate = self._gates.setdefault(identity, _Gate())
        counters = self._counter(identity[0])
        if gate.active < self.settings.max_concurrent and not gate.waiters:
            self._start(gate, counters)
            return
        if len(gate.waiters) >= self.settings.max_queued:
            self._refused(counters)
            raise Throttled(
                429,
                f"Too many requests are queued for this user: {self.settings.max_concurrent} are"
                f" processed and {self.settings.max_queued} are waiting.",
                retry_after=1,
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        gate.waiters.append(waiter)
        counters.queued += 1
        try:
            await asyncio.wait_for(waiter, timeout=self.settings.queue_timeout_seconds)
        except TimeoutError:
            self._refused(counters)
            raise Throttled(503, "The request waited too long in the queue of this user.", retry_after=5) from None
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(identity)  # the slot was handed over as the client left
            raise
        finally:
            counters.queued -= 1
            if waiter in gate.waiters:
                gate.waiters.remove(waiter)
        # release() handed its slot over: active stays the same, it is now ours.

    def _start(self, gate: _Gate, counters: TenantCounters) -> None:
        gate.active += 1
        counters.active += 1
        counters.max_concurrency = max(counters.max_concurrency, counters.active)

    def release(self, identity: Identity) -> None:
        gate = self._gates[identity]
        counters = self._counter(identity[0])
        while gate.waiters:
            waiter = gate.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # hand the slot over without freeing it
                return
        gate.active -= 1
        counters.active -= 1

    def count_request(self, identity: Identity) -> None:
        """Count one request in the sliding window, or refuse it with 429."""
        with self._lock:
            gate = self._gates.setdefault(identity, _Gate())
            counters = self._counter(identity[0])
            now = time.monotonic()
            window = gate.window
            while window and window[0] <= now - self.settings.window_seconds:
                window.popleft()
            if len(window) >= self.settings.window_requests:
                counters.throttled += 1
                retry_after = max(1, math.ceil(window[0] + self.settings.window_seconds - now))
                raise Throttled(
                    429,
                    f"The rate limit of {self.settings.window_requests} requests per"
                    f" {self.settings.window_seconds:g} seconds was exceeded for this user.",
                    retry_after=retry_after,
                )
            window.append(now)
            counters.requests_served += 1

    def _refused(self, counters: TenantCounters) -> None:
        with self._lock:
            counters.throttled += 1

    def note_throttled(self, tenant_id: uuid.UUID) -> None:
        """A 429 sent on purpose (fault too_many_requests) counts as a 429 sent."""
        with self._lock:
            self._counter(tenant_id).throttled += 1


def dataclass_copy(counters: TenantCounters) -> TenantCounters:
    return TenantCounters(
        counters.requests_served,
        counters.max_concurrency,
        counters.throttled,
        counters.active,
        counters.queued,
    )
