"""Invalid payloads on subjects the fetchers and both projections consume: each is
dead-lettered (within max_deliver: at its first delivery, since no retry can make it valid),
is visible through `hub dead-letters` and to its own firm's owner through the API, and
blocks none of the work published after it."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import pytest
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from hub_common.streams import DEAD_LETTER_STREAM, EVENTS_STREAM, SNAPSHOTS_STREAM
from tests.faults.conftest import FAST_DELIVERY, FaultHub
from tests.faults.ledger import assert_every_refresh_ended_once, wait_until
from tests.support.processes import hub_environment
from tests.support.sign_in import join_firm

pytestmark = pytest.mark.e2e


def _cli_dead_letters(nats_url: str, *options: str) -> list[dict[str, Any]]:
    """`hub dead-letters --json`, run as an operator would."""
    result = subprocess.run(
        [sys.executable, "-m", "hub_cli", "dead-letters", "--json", *options],
        env=hub_environment({"HUB_NATS_URL": nats_url}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


async def test_poison_messages_are_dead_lettered_visible_and_block_nothing(
    hub: FaultHub, bus: Client, read_model: AsyncEngine
) -> None:
    js = bus.jetstream()
    firm = hub.sign_up("poison")
    tenant = hub.tenants()[0]
    # Before any real work of the firm, so that work has to get past them.
    poison_event = await js.publish(
        f"hub.{firm.firm_id}.client.added",
        b'{"type": "ClientAdded", "data": "poison"}',
        headers={"Nats-Msg-Id": str(uuid.uuid4())},
    )
    poison_snapshot = await js.publish(
        f"hub.{firm.firm_id}.company.{uuid.uuid4()}.snapshot",
        b"\xff\xfe not even text",
        headers={"Nats-Msg-Id": str(uuid.uuid4())},
    )
    unattributable = await js.publish(
        "hub.not-a-firm.refresh.requested", b"{}", headers={"Nats-Msg-Id": str(uuid.uuid4())}
    )
    client_id = hub.add_client(firm, tenant)
    await assert_every_refresh_ended_once(
        js, read_model, firm.firm_id, {client_id: tenant.companies}, timeout=60, details=hub.logs
    )

    expected = {
        (EVENTS_STREAM, poison_event.seq, "fetcher"),
        (EVENTS_STREAM, poison_event.seq, "gateway-events"),
        (SNAPSHOTS_STREAM, poison_snapshot.seq, "gateway-snapshots"),
        # The registry weighs snapshots against the firm's alert rules.
        (SNAPSHOTS_STREAM, poison_snapshot.seq, "registry-snapshots"),
        (EVENTS_STREAM, unattributable.seq, "fetcher"),
        (EVENTS_STREAM, unattributable.seq, "gateway-events"),
    }
    records: list[dict[str, Any]] = []

    async def all_dead_lettered() -> bool:
        records[:] = _cli_dead_letters(hub.broker.url)
        return expected <= {(r["stream"], r["stream_sequence"], r["consumer"]) for r in records}

    await wait_until("every poison message is dead-lettered", all_dead_lettered, timeout=30, details=hub.logs)
    ours = [r for r in records if (r["stream"], r["stream_sequence"], r["consumer"]) in expected]
    assert len(ours) == len(expected)  # once per consumer, not once per delivery
    max_deliver = int(FAST_DELIVERY["HUB_PROJECTION_MAX_DELIVER"])
    assert all(1 <= r["num_delivered"] <= max_deliver and r["error"].startswith("invalid event") for r in ours)
    assert all("payload_base64" in r for r in ours if r["stream"] == SNAPSHOTS_STREAM)
    firm_only = _cli_dead_letters(hub.broker.url, "--firm", str(firm.firm_id))
    assert {(r["stream"], r["stream_sequence"], r["consumer"]) for r in firm_only} == {
        key for key in expected if key[1] != unattributable.seq
    }

    # The firm's owner sees the firm's own two poison messages through the API, not the third.
    seen = firm.api.get("/api/v1/dead-letters").json()["dead_letters"]
    assert {(d["stream"], d["stream_sequence"], d["consumer"]) for d in seen} == {
        key for key in expected if key[1] != unattributable.seq
    }
    assert all(d["subject"].startswith(f"hub.{firm.firm_id}.") for d in seen)
    # Another firm sees none of them; the unattributable one only an operator sees.
    other = hub.sign_up("poison-other")
    assert other.api.get("/api/v1/dead-letters").json()["dead_letters"] == []
    # Within the firm, a dead letter is raw payload for owners and admins, not for staff.
    staff_email = f"staff-{uuid.uuid4().hex[:8]}@{firm.email.split('@')[1]}"
    invited = firm.api.post("/api/v1/accountants/invitations", json={"email": staff_email, "role": "staff"})
    assert invited.status_code == 202, invited.text
    join_firm(hub.url, staff_email, str(firm.firm_id))
    staff = hub.client(staff_email)
    assert staff.get("/api/v1/me").json()["firm_id"] == str(firm.firm_id)
    assert staff.get("/api/v1/dead-letters").status_code == 403
    assert (await js.stream_info(DEAD_LETTER_STREAM)).state.messages >= len(expected)
