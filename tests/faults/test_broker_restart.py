"""nats-server crashes and restarts (same JetStream file store) while refreshes run: every
service reconnects by itself, publishers retry with the same Nats-Msg-Id, and every
refresh still ends in exactly one outcome per company."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from hub_common.bus import publish_event
from hub_common.events import Actor, ClientConnection, RefreshRequested, new_envelope
from tests.faults.conftest import FaultHub
from tests.faults.ledger import assert_every_refresh_ended_once, read_ledger, wait_until

pytestmark = pytest.mark.e2e


async def test_a_broker_restart_mid_run_loses_and_doubles_nothing(
    hub: FaultHub, bus: Client, read_model: AsyncEngine
) -> None:
    js = bus.jetstream()
    tenants = hub.tenants()[:2]
    firm, companies = await hub.onboard("restart", tenants, js, read_model)

    for tenant in tenants:
        hub.slow_down(tenant, latency_ms=1000)
    refresh_ids = hub.refresh(firm)

    async def under_way() -> bool:
        ledger = await read_ledger(js, firm.firm_id)
        return any(ledger.discovered[refresh_id] for refresh_id in refresh_ids)

    await wait_until("a refresh is under way", under_way, timeout=30, details=hub.logs)
    hub.broker.kill()
    # Published while the broker is down: the publisher keeps retrying under the event's id.
    client_id, tenant = next(iter(companies)), tenants[0]
    during_outage = new_envelope(
        RefreshRequested(
            refresh_id=uuid.uuid4(),
            client_id=client_id,
            connection=ClientConnection(tenant=tenant.domain, environment="Production"),
        ),
        firm_id=firm.firm_id,
        actor=Actor.service("fault-test"),
    )
    publishing = asyncio.create_task(publish_event(js, during_outage, attempts=20, timeout=2))
    await asyncio.sleep(3)
    assert not publishing.done()
    hub.broker.start()
    await asyncio.wait_for(publishing, timeout=60)

    ledger = await assert_every_refresh_ended_once(
        js, read_model, firm.firm_id, companies, timeout=90, answered=refresh_ids, details=hub.logs
    )
    # Every retry carried the event id: the stream holds it once, however many reached it.
    assert ledger.requests_stored[during_outage.data.refresh_id] == 1
    hub.assert_all_running()
    async with httpx.AsyncClient(base_url=hub.url) as http:

        async def gateway_healthy() -> bool:
            return (await http.get("/healthz")).status_code == 200

        await wait_until("the gateway reports healthy", gateway_healthy, timeout=30, details=hub.logs)

    # Commands (request/reply), the outbox relay and every consumer work as before.
    hub.clear_faults()
    hub.refresh(firm)
    await assert_every_refresh_ended_once(js, read_model, firm.firm_id, companies, timeout=60, details=hub.logs)
