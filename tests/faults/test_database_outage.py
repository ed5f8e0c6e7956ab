"""The read model's database goes away for a while (a TCP proxy between the gateway and
PostgreSQL is cut): the projections nack and pause, nothing is acknowledged before it is
stored, and once the database is back every refresh shows exactly one outcome per company."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hub_common.streams import EVENTS_STREAM, GATEWAY_EVENTS_CONSUMER, GATEWAY_SNAPSHOTS_CONSUMER, SNAPSHOTS_STREAM
from tests.faults.conftest import FaultHub
from tests.faults.ledger import assert_every_refresh_ended_once, company_outcomes, read_ledger, wait_until

pytestmark = pytest.mark.e2e

# Several times the projections' whole retry budget (4 deliveries, 0.2 + 0.4 + 0.8 + 1 s):
# were an outage to use up deliveries, these events would be dead-lettered, not projected.
OUTAGE_SECONDS = 8.0


async def _stored_positions(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as connection:
        rows = await connection.execute(text("SELECT stream, sequence FROM gateway_positions"))
        return {str(stream): int(sequence) for stream, sequence in rows}


async def _acknowledged(js: JetStreamContext) -> dict[str, int]:
    """The highest stream sequence below which each projection acknowledged everything."""
    floors = {}
    for spec, stream in ((GATEWAY_EVENTS_CONSUMER, EVENTS_STREAM), (GATEWAY_SNAPSHOTS_CONSUMER, SNAPSHOTS_STREAM)):
        info = await js.consumer_info(spec.stream, spec.durable)
        floors[stream] = info.ack_floor.stream_seq
    return floors


async def test_a_database_outage_is_waited_out_and_nothing_is_acked_unstored(
    hub: FaultHub, bus: Client, read_model: AsyncEngine
) -> None:
    proxy = hub.database.proxy
    if proxy is None:
        pytest.skip("needs PostgreSQL (HUB_TEST_DATABASE_URL) to put a cuttable proxy in front of")
    js = bus.jetstream()
    tenants = hub.tenants()[:2]
    firm, companies = await hub.onboard("outage", tenants, js, read_model)

    for tenant in tenants:
        hub.slow_down(tenant, latency_ms=500)
    refresh_ids = hub.refresh(firm)
    proxy.cut()
    cut_at = time.monotonic()

    async def published() -> bool:
        ledger = await read_ledger(js, firm.firm_id)
        return set(refresh_ids) <= set(ledger.requested) and all(
            ledger.outcomes(refresh, company)
            for refresh, company in ledger.expected(companies)
            if refresh in refresh_ids
        )

    await wait_until("the fetchers published every outcome", published, timeout=30, details=hub.logs)
    samples = 0
    while time.monotonic() - cut_at < OUTAGE_SECONDS:
        acknowledged, stored = await _acknowledged(js), await _stored_positions(read_model)
        for stream, floor in acknowledged.items():
            assert floor <= stored.get(stream, 0), f"{stream}: acked up to {floor}, stored only {stored}"
        samples += 1
        await asyncio.sleep(0.25)
    assert samples > 10
    shown = await company_outcomes(read_model, firm.firm_id)
    assert not {refresh for _, refresh in shown.values()} & set(refresh_ids), "projected without a database?"
    async with httpx.AsyncClient(base_url=hub.url) as http:
        assert (await http.get("/healthz")).json()["database"] is False
    assert proxy.refused > 0  # the gateway kept trying

    proxy.restore()
    ledger = await assert_every_refresh_ended_once(
        js, read_model, firm.firm_id, companies, timeout=60, answered=refresh_ids, details=hub.logs
    )
    assert set(refresh_ids) <= set(ledger.requested)
    # Nothing was given up on: no dead letter, and the gateway paused rather than retried out.
    assert firm.api.get("/api/v1/dead-letters").json()["dead_letters"] == []
    assert "store unavailable; pausing the consumer" in hub.processes["gateway"].log()
