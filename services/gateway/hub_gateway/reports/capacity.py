"""How many company workbooks one gateway prepares at once.

A workbook is read live from the client's BC by a fetcher's statement workers (a few per
process, shared by every firm), and built in this process's memory: the largest
statements take hundreds of MB while their workbook is written. So each firm may have a
few workbooks on their way at once (one firm's script of downloads would otherwise hold
every statement worker, and the other firms' downloads would time out), and only a few
are built at a time; the rest wait their turn.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

# Workbooks one firm may have on their way through one gateway process at once.
WORKBOOKS_PER_FIRM = 3
# Workbooks one gateway process builds at once (each in a worker thread).
BUILDS_AT_ONCE = 2


class FirmBusy(Exception):
    """The firm already has as many workbooks on their way as it may."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"{limit} workbooks are already on their way for this firm")
        self.limit = limit


class WorkbookCapacity:
    def __init__(self, *, per_firm: int = WORKBOOKS_PER_FIRM, builds_at_once: int = BUILDS_AT_ONCE) -> None:
        self._per_firm = per_firm
        self._on_their_way: dict[uuid.UUID, int] = {}
        self._builds = asyncio.Semaphore(builds_at_once)

    @asynccontextmanager
    async def for_firm(self, firm_id: uuid.UUID) -> AsyncIterator[None]:
        """Holds one of the firm's places while its workbook is read and built; FirmBusy
        when none is free (nothing waits, so a script cannot queue without end)."""
        taken = self._on_their_way.get(firm_id, 0)
        if taken >= self._per_firm:
            raise FirmBusy(self._per_firm)
        self._on_their_way[firm_id] = taken + 1
        try:
            yield
        finally:
            left = self._on_their_way[firm_id] - 1
            if left:
                self._on_their_way[firm_id] = left
            else:
                del self._on_their_way[firm_id]

    @asynccontextmanager
    async def building(self) -> AsyncIterator[None]:
        """Waits for a turn to build (memory, not BC, is what this bounds)."""
        async with self._builds:
            yield
