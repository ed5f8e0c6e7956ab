"""BC's per-identity limits: at most 5 requests at once and 6,000 per 5 minutes.

This limiter holds them inside one process. Several fetcher processes share a tenant's
budget by each taking an equal share (``share``), so together they stay under BC's limits.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class _TenantBudget:
    def __init__(self, concurrent: int, per_window: int, window_seconds: float) -> None:
        self.semaphore = asyncio.Semaphore(concurrent)
        self.per_window = per_window
        self.window_seconds = window_seconds
        self.started: deque[float] = deque()
        self.lock = asyncio.Lock()

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


class TenantLimiter:
    def __init__(
        self,
        *,
        concurrent: int = 5,
        per_window: int = 6000,
        window_seconds: float = 300.0,
        share: int = 1,
    ) -> None:
        self._concurrent = max(1, concurrent // max(1, share))
        self._per_window = max(1, per_window // max(1, share))
        self._window_seconds = window_seconds
        self._budgets: dict[str, _TenantBudget] = {}

    def _budget(self, tenant: str) -> _TenantBudget:
        budget = self._budgets.get(tenant)
        if budget is None:
            budget = _TenantBudget(self._concurrent, self._per_window, self._window_seconds)
            self._budgets[tenant] = budget
        return budget

    @asynccontextmanager
    async def slot(self, tenant: str, weight: int = 1) -> AsyncIterator[None]:
        """One request in flight; ``weight`` is how many BC counts (a $batch counts each part)."""
        budget = self._budget(tenant)
        async with budget.semaphore:
            await budget.wait_for_window(weight)
            yield
