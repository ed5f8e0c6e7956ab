"""The cue services are optional beside a company's $batch: their grace counts from their
requests reaching BC, and their wait for one of the tenant's slots is bounded too, so a busy
or throttled tenant never holds a company whose figures are read already."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any, cast

import pytest

from hub_fetcher import refresh
from hub_fetcher.bc.client import BusinessCentral, Environment
from hub_fetcher.figures.company import CueFigures
from hub_fetcher.refresh import ClientReader, CuesAtBc

ENVIRONMENT = Environment(tenant="contoso.com", name="Production")


async def test_cues_still_waiting_for_a_slot_are_given_up_after_their_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(refresh, "CUES_SLOT_WAIT_SECONDS", 0.2)
    reader = ClientReader(cast(BusinessCentral, cast(Any, None)), web_client_base="https://bc.test")

    async def waiting_for_a_slot() -> None:
        await asyncio.sleep(3600)

    cues_read = asyncio.ensure_future(waiting_for_a_slot())
    started = time.monotonic()
    assert await reader._cues_within_grace(ENVIRONMENT, cues_read, CuesAtBc()) is None
    assert time.monotonic() - started < 2, "held until the refresh's deadline"
    assert cues_read.cancelled()
    # The environment goes without cues for a while, as when they answer too slowly.
    assert reader._cues_skipped_until[ENVIRONMENT] > time.monotonic()


async def test_cues_that_reached_bc_get_their_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(refresh, "CUES_SLOT_WAIT_SECONDS", 0.2)
    reader = ClientReader(cast(BusinessCentral, cast(Any, None)), web_client_base="https://bc.test")
    at_bc = CuesAtBc()

    figures = CueFigures(
        cash_accounts_balance=Decimal("1.00"), overdue_sales_amount=Decimal(0), overdue_purchase_amount=Decimal(0)
    )

    async def answered_after_the_slot_wait() -> CueFigures:
        await asyncio.sleep(0.1)
        at_bc.activity.set()
        at_bc.finance.set()
        await asyncio.sleep(0.5)  # BC computing the cues, longer than the slot wait
        return figures

    cues_read = asyncio.ensure_future(answered_after_the_slot_wait())
    assert await reader._cues_within_grace(ENVIRONMENT, cues_read, at_bc) == figures
