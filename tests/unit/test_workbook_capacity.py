"""How many company workbooks one gateway prepares at once, per firm and in all."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack

import pytest

from hub_gateway.reports.capacity import FirmBusy, WorkbookCapacity


async def test_a_firm_has_its_own_few_places_and_gets_them_back() -> None:
    capacity = WorkbookCapacity(per_firm=2, builds_at_once=1)
    firm, other_firm = uuid.uuid4(), uuid.uuid4()
    async with AsyncExitStack() as held:
        for _ in range(2):
            await held.enter_async_context(capacity.for_firm(firm))
        with pytest.raises(FirmBusy):
            await held.enter_async_context(capacity.for_firm(firm))
        async with capacity.for_firm(other_firm):  # another firm is not kept waiting
            pass
    async with capacity.for_firm(firm), capacity.for_firm(firm):  # both given back
        pass


async def test_a_place_is_given_back_when_the_read_fails() -> None:
    capacity = WorkbookCapacity(per_firm=1, builds_at_once=1)
    firm = uuid.uuid4()
    with pytest.raises(RuntimeError):
        async with capacity.for_firm(firm):
            raise RuntimeError("BC failed")
    async with capacity.for_firm(firm):
        pass


async def test_builds_take_turns() -> None:
    capacity = WorkbookCapacity(builds_at_once=1)
    running, most = 0, 0

    async def build() -> None:
        nonlocal running, most
        async with capacity.building():
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.01)
            running -= 1

    await asyncio.gather(*(build() for _ in range(5)))
    assert most == 1
