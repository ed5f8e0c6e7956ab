"""Events duplicated or redelivered take effect once: JetStream drops a republished event
(same Nats-Msg-Id); a copy stored under another id is refreshed again under the same
outcome ids, which are dropped; and the read model, given every event a second time (its
durables reset), stays exactly as it was, since each row keeps the stream sequence it
last applied, in the same transaction."""

from __future__ import annotations

import pytest
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from hub_common.bus import MSG_ID_HEADER
from hub_common.streams import EVENTS_STREAM, GATEWAY_EVENTS_CONSUMER, GATEWAY_SNAPSHOTS_CONSUMER, declare_topology
from hub_gateway.readmodel.rebuild import table_checksums
from tests.faults.conftest import FaultHub
from tests.faults.ledger import assert_every_refresh_ended_once, consumers_idle, wait_until
from tests.support.processes import wait_until_healthy

pytestmark = pytest.mark.e2e


async def test_duplicated_and_redelivered_events_take_effect_once(
    hub: FaultHub, bus: Client, read_model: AsyncEngine
) -> None:
    js = bus.jetstream()
    firm, companies = await hub.onboard("duplicates", hub.tenants()[1:2], js, read_model)
    [client_id] = companies
    [refresh_id] = hub.refresh(firm, client_id)
    await assert_every_refresh_ended_once(js, read_model, firm.firm_id, companies, timeout=60, details=hub.logs)

    request = await js.get_last_msg(EVENTS_STREAM, f"hub.{firm.firm_id}.refresh.requested")
    assert request.subject is not None and request.data is not None
    headers = dict(request.headers or {})
    # The same event again, as a publisher retrying after a lost acknowledgement would send it.
    again = await js.publish(request.subject, request.data, headers=headers)
    assert again.duplicate and again.seq == request.seq
    # A copy under another id, as if a relay had lost track of it: stored, and refreshed again.
    copy = await js.publish(request.subject, request.data, headers={**headers, MSG_ID_HEADER: f"{refresh_id}:copy"})
    assert not copy.duplicate
    ledger = await assert_every_refresh_ended_once(
        js, read_model, firm.firm_id, companies, timeout=60, details=hub.logs
    )
    assert ledger.requests_stored[refresh_id] == 2
    assert ledger.discovered[refresh_id] == 1  # the second refresh's events were all dropped

    # Every event of every stream delivered to the read model a second time.
    before = await table_checksums(hub.database.direct_url)
    hub.processes["gateway"].stop()
    for spec in (GATEWAY_EVENTS_CONSUMER, GATEWAY_SNAPSHOTS_CONSUMER):
        await js.delete_consumer(spec.stream, spec.durable)
    # Only the registry creates a durable (the gateway waits for it): as at its next start.
    await declare_topology(js, hub.topology())
    gateway = hub.start("gateway", "gateway", hub.gateway_settings)
    wait_until_healthy(f"{hub.url}/healthz", gateway, timeout=60)

    async def replayed() -> bool:
        infos = [
            await js.consumer_info(s.stream, s.durable) for s in (GATEWAY_EVENTS_CONSUMER, GATEWAY_SNAPSHOTS_CONSUMER)
        ]
        return all(info.delivered.stream_seq > 0 for info in infos) and await consumers_idle(js)

    await wait_until("every event was delivered again", replayed, timeout=60, details=hub.logs)
    assert await table_checksums(hub.database.direct_url) == before
