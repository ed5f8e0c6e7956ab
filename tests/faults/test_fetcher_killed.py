"""A fetcher is killed (SIGKILL) in the middle of a refresh: another fetcher finishes it,
and every company still ends in exactly one outcome."""

from __future__ import annotations

import pytest
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.faults.conftest import FaultHub
from tests.faults.ledger import assert_every_refresh_ended_once, read_ledger, wait_until

pytestmark = pytest.mark.e2e


async def test_a_refresh_whose_fetcher_is_killed_finishes_on_another(
    hub: FaultHub, bus: Client, read_model: AsyncEngine
) -> None:
    js = bus.jetstream()
    tenant = hub.tenants()[0]
    firm, companies = await hub.onboard("killed", [tenant], js, read_model)
    [client_id] = companies

    # One fetcher alone takes the refresh, so the one killed is the one holding it.
    first, second = hub.fetchers()[:2]
    hub.processes[second].stop()
    hub.slow_down(tenant, latency_ms=3000)
    [refresh_id] = hub.refresh(firm, client_id)

    async def mid_refresh() -> bool:
        return (await read_ledger(js, firm.firm_id)).discovered[refresh_id] == 1

    # Discovered, and each company's reads (3 s each) under way: the middle of the refresh.
    await wait_until("the companies are discovered", mid_refresh, timeout=30, details=hub.logs)
    hub.processes[first].kill()
    # What it had stored before it died: some company of the refresh must still be unread.
    left = await read_ledger(js, firm.firm_id)
    assert any(left.outcomes(refresh_id, company) == 0 for company in tenant.companies), "killed too late"

    hub.ensure_fetchers(1)
    [successor] = hub.fetchers()
    assert successor not in (first, second)
    ledger = await assert_every_refresh_ended_once(
        js, read_model, firm.firm_id, companies, timeout=60, details=hub.logs
    )
    # The successor ran the refresh again under the same event ids: JetStream kept one of each.
    assert ledger.discovered[refresh_id] == 1
    assert '"refresh done"' in hub.processes[successor].log()
