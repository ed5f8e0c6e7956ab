"""An accepted invitation puts the client on the accountant's dashboard by itself
(InvitationAccepted, then ClientAdded from the registry), once."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import nats
import pytest

from hub_common.bus import MSG_ID_HEADER, event_headers, publish_event
from hub_common.events import Actor, ActorKind, Envelope, InvitationAccepted, TenantAccessGranted, new_envelope
from tests.conftest import Sandbox
from tests.e2e.conftest import Hub
from tests.support.connect import add_connected_client, client_access_page, client_admin
from tests.support.events import firm_events
from tests.support.sign_in import join_firm
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


def _acceptance(
    me: dict[str, Any],
    tenant: str,
    client_name: str,
    invited_at: datetime | None = None,
    environment: str = "Production",
) -> Envelope[InvitationAccepted]:
    """What the invitations service publishes once the accountant ``me`` accepted an
    invitation to add the client."""
    accepted = InvitationAccepted(
        invitation_id=uuid.uuid4(),
        accountant_id=uuid.UUID(me["accountant_id"]),
        email=me["email"],
        tenant=tenant,
        environment=environment,
        client_name=client_name,
        add_to_dashboard=True,
        invited_at=invited_at,
    )
    actor = Actor(kind=ActorKind.ACCOUNTANT, id=me["accountant_id"])
    return new_envelope(accepted, firm_id=uuid.UUID(me["firm_id"]), actor=actor)


async def _publish(nats_url: str, envelope: Envelope[InvitationAccepted], *, message_id: str | None = None) -> None:
    """Publish the acceptance; ``message_id`` other than the event's stores it again past
    JetStream's duplicate window, as a relay republishing it after a crash would."""
    connection = await nats.connect(nats_url)
    try:
        if message_id is None:
            await publish_event(connection.jetstream(), envelope)
        else:
            headers = event_headers(envelope) | {MSG_ID_HEADER: message_id}
            await connection.jetstream().publish(envelope.subject, envelope.to_bytes(), headers=headers)
    finally:
        await connection.close()


async def _accepted(
    nats_url: str,
    me: dict[str, Any],
    tenant: str,
    client_name: str,
    invited_at: datetime | None = None,
    environment: str = "Production",
) -> uuid.UUID:
    """Publish an acceptance by the accountant ``me``; returns the invitation's id."""
    envelope = _acceptance(me, tenant, client_name, invited_at, environment)
    await _publish(nats_url, envelope)
    return envelope.data.invitation_id


def _once_every_row_is_read(api: httpx.Client) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The firm's clients and dashboard rows once every row is read (or after a minute)."""
    deadline = time.monotonic() + 60
    clients: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        clients = api.get("/api/v1/clients").json()["clients"]
        rows = api.get("/api/v1/dashboard").json()["rows"]
        if rows and all(r["state"] == "ok" for r in rows):
            break
        time.sleep(0.3)
    return clients, rows


async def test_the_client_lands_on_the_dashboard_once(hub: Hub, sandbox: Sandbox, nats_url: str) -> None:
    api = hub.client("laura@contoso-accounting.example")
    me = api.get("/api/v1/me").json()
    for _ in range(2):  # accepting twice (or a redelivery) must not add the client twice
        await _accepted(nats_url, me, "muhlbachgruppe.onmicrosoft.com", "Mühlbach Gruppe")
    deadline = time.monotonic() + 40
    clients: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        clients = api.get("/api/v1/clients").json()["clients"]
        rows = api.get("/api/v1/dashboard").json()["rows"]
        if clients and rows and all(r["state"] == "ok" for r in rows):
            break
        time.sleep(0.3)
    assert [c["name"] for c in clients] == ["Mühlbach Gruppe"]
    assert clients[0]["source"] == "invitation"
    assert clients[0]["client_url"] == f"{sandbox.web_client}/muhlbachgruppe.onmicrosoft.com/Production"
    assert rows
    assert all(r["state"] == "ok" for r in rows)
    assert hub.client("outsider@fabrikam-audit.example").get("/api/v1/clients").json()["clients"] == []


async def test_an_acceptance_delivered_again_does_not_bring_back_a_removed_card(
    hub: Hub, sandbox: Sandbox, nats_url: str
) -> None:
    """The registry acted on an acceptance, the accountant removed the card, and the same
    event reaches the registry again (its acknowledgement lost after the commit, or a relay
    publishing it again): the card stays removed."""
    api = hub.client("petra@redelivered-accounting.example")
    me = api.get("/api/v1/me").json()
    acceptance = _acceptance(me, "muhlbachgruppe.onmicrosoft.com", "Mühlbach Gruppe")
    await _publish(nats_url, acceptance)
    clients, rows = _once_every_row_is_read(api)
    assert [c["name"] for c in clients] == ["Mühlbach Gruppe"] and rows
    assert api.delete(f"/api/v1/clients/{clients[0]['client_id']}").status_code == 202
    deadline = time.monotonic() + 30
    while api.get("/api/v1/clients").json()["clients"]:
        assert time.monotonic() < deadline, "the card was never removed"
        await asyncio.sleep(0.3)

    await _publish(nats_url, acceptance, message_id=f"{acceptance.id}-again")
    # The registry handles its accepted invitations one at a time, in order: once the next
    # acceptance's card is there, the one delivered again was handled.
    await _accepted(nats_url, me, "nordlysgruppen.onmicrosoft.com", "Nordlys Gruppen")
    deadline = time.monotonic() + 40
    while not (names := sorted(c["name"] for c in api.get("/api/v1/clients").json()["clients"])):
        assert time.monotonic() < deadline, "the next acceptance never added its card"
        await asyncio.sleep(0.3)
    assert names == ["Nordlys Gruppen"], "the removed card came back"


async def test_a_removed_colleagues_acceptance_gives_nothing_and_a_staff_members_gives_access_only(
    hub: Hub, sandbox: Sandbox, nats_url: str
) -> None:
    """An acceptance recorded as its accountant was removed (the gateway checked the session
    a moment before) gives the firm nothing; a staff member's gives the access without a
    card, whatever the event asks, since adding clients is the owners' and admins'."""
    owner = hub.client("quinn@acceptance-roles.example")
    me = owner.get("/api/v1/me").json()
    colleagues: dict[str, dict[str, Any]] = {}
    for email, role in (("rob@acceptance-roles.example", "staff"), ("sam@acceptance-roles.example", "admin")):
        assert owner.post("/api/v1/accountants/invitations", json={"email": email, "role": role}).status_code == 202
        join_firm(hub.url, email, me["firm_id"])
        joined = hub.client(email)

        def in_the_firm(joined: httpx.Client = joined) -> bool:
            return bool(joined.get("/api/v1/me").json().get("firm_id") == me["firm_id"])

        eventually(in_the_firm, f"{email} in the firm", timeout=20)
        colleagues[role] = joined.get("/api/v1/me").json()
    assert owner.delete(f"/api/v1/accountants/{colleagues['admin']['accountant_id']}").status_code == 200

    await _accepted(nats_url, colleagues["admin"], "muhlbachgruppe.onmicrosoft.com", "Mühlbach Gruppe")
    await _accepted(nats_url, colleagues["staff"], "nordlysgruppen.onmicrosoft.com", "Nordlys Gruppen")
    # The registry handles acceptances one at a time, in order: once the owner's card is
    # there, the two before it were handled.
    await _accepted(nats_url, me, "cronus-sample.onmicrosoft.com", "CRONUS")
    deadline = time.monotonic() + 40
    while not (names := sorted(c["name"] for c in owner.get("/api/v1/clients").json()["clients"])):
        assert time.monotonic() < deadline, "the owner's acceptance never added its card"
        await asyncio.sleep(0.3)
    assert names == ["CRONUS"]
    granted = {
        event.data.tenant
        for event in firm_events(nats_url, uuid.UUID(me["firm_id"]), "TenantAccessGranted")
        if isinstance(event.data, TenantAccessGranted)
    }
    assert granted == {"nordlysgruppen.onmicrosoft.com", "cronus-sample.onmicrosoft.com"}


async def test_an_invitation_for_a_client_already_there_attaches_to_it(
    hub: Hub, sandbox: Sandbox, nats_url: str
) -> None:
    """Added by hand while waiting for permission, then the client's administrator invites
    the firm: the grant attaches to that card and it is read; no second copy appears."""
    api = hub.client("mona@attach-accounting.example")
    me = api.get("/api/v1/me").json()
    tenants = httpx.get(f"{sandbox.base_url}/_sandbox/tenants", verify=sandbox.tls()).json()["tenants"]
    tenant = next(t for t in tenants if t["domain"] == "nordlysgruppen.onmicrosoft.com")
    added = api.post(
        "/api/v1/clients", json={"name": "Nordlys (by hand)", "client_url": f"{sandbox.web_client}/{tenant['domain']}"}
    )
    assert added.status_code == 202 and added.json()["access_granted"] is False, added.text
    # As the invitations service has it: the tenant id from the administrator's token.
    await _accepted(nats_url, me, tenant["id"], "Nordlys Gruppen")
    clients, rows = _once_every_row_is_read(api)
    assert [(c["name"], c["access"]["state"], c["access"]["method"]) for c in clients] == [
        ("Nordlys (by hand)", "granted", "invitation")
    ]
    assert rows and all(r["state"] == "ok" and r["client_id"] == added.json()["client_id"] for r in rows)


async def test_an_invitation_naming_bcs_admin_center_gives_the_access_and_adds_no_card(
    hub: Hub, sandbox: Sandbox, nats_url: str
) -> None:
    """Raised before such names were refused, an invitation to ".../Admin" (BC's admin
    center, no environment) cannot become a card: the acceptance still gives the firm the
    tenant's access, so the card the accountant then adds by hand is read at once."""
    api = hub.client("ines@admin-center-accounting.example")
    me = api.get("/api/v1/me").json()
    tenants = httpx.get(f"{sandbox.base_url}/_sandbox/tenants", verify=sandbox.tls()).json()["tenants"]
    tenant = next(t for t in tenants if t["domain"] == "nordlysgruppen.onmicrosoft.com")
    await _accepted(nats_url, me, tenant["id"], "Nordlys Gruppen", environment="Admin")
    added = api.post("/api/v1/clients", json={"name": "Nordlys", "client_url": f"{sandbox.web_client}/{tenant['id']}"})
    assert added.status_code == 202, added.text
    clients, rows = _once_every_row_is_read(api)
    assert [(c["name"], c["access"]["state"], c["access"]["method"]) for c in clients] == [
        ("Nordlys", "granted", "invitation")
    ]
    assert rows and all(r["state"] == "ok" for r in rows)


async def test_an_invited_client_takes_the_time_zone_the_firms_cards_agree_on(
    hub: Hub, sandbox: Sandbox, nats_url: str
) -> None:
    """An invited client comes without a card to choose its time zone on: it takes the one
    every card of the firm that names one names, and none (UTC) when they differ."""
    api = hub.client("nora@tokyo-accounting.example")
    me = api.get("/api/v1/me").json()
    tenants = httpx.get(f"{sandbox.base_url}/_sandbox/tenants", verify=sandbox.tls()).json()["tenants"]
    by_hand = api.post(
        "/api/v1/clients",
        json={
            "name": "CRONUS",
            "client_url": f"{sandbox.web_client}/cronus-sample.onmicrosoft.com/Production",
            "time_zone": "Asia/Tokyo",
        },
    )
    assert by_hand.status_code == 202, by_hand.text

    def card_of(name: str) -> dict[str, Any] | None:
        clients = api.get("/api/v1/clients").json()["clients"]
        card: dict[str, Any] | None = next((c["card"] for c in clients if c["name"] == name), None)
        return card

    def invited(name: str) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while (card := card_of(name)) is None:
            assert time.monotonic() < deadline, f"{name} never landed on the dashboard"
            time.sleep(0.3)
        return card

    await _accepted(nats_url, me, "muhlbachgruppe.onmicrosoft.com", "Mühlbach Gruppe")
    assert invited("Mühlbach Gruppe").get("time_zone") == "Asia/Tokyo"

    # A card in another zone: the firm's cards no longer agree, and the next invited client
    # keeps UTC until the accountant says where it is.
    other = next(t for t in tenants if t["domain"] == "nordlysgruppen.onmicrosoft.com")
    elsewhere = api.post(
        "/api/v1/clients",
        json={"name": "Nordlys", "client_url": f"{sandbox.web_client}/{other['domain']}", "time_zone": "Europe/Oslo"},
    )
    assert elsewhere.status_code == 202, elsewhere.text
    used = ("cronus-sample.onmicrosoft.com", "muhlbachgruppe.onmicrosoft.com", other["domain"])
    third = next(t for t in tenants if t["domain"] not in used)
    await _accepted(nats_url, me, third["domain"], "Third client")
    assert "time_zone" not in invited("Third client")


async def test_an_acceptance_crossing_a_withdrawal_gives_no_access(hub: Hub, sandbox: Sandbox, nats_url: str) -> None:
    """The invitations service refuses an invitation raised before the client withdrew the
    firm's access; one accepted just as the withdrawal happened reaches the registry, which
    gives no access by it either. One raised after the withdrawal does."""
    api = hub.client("olga@crossed-accounting.example")
    me = api.get("/api/v1/me").json()
    tenants = httpx.get(f"{sandbox.base_url}/_sandbox/tenants", verify=sandbox.tls()).json()["tenants"]
    tenant = next(t for t in tenants if t["domain"] == "cronus-sample.onmicrosoft.com")
    url = f"{sandbox.web_client}/{tenant['domain']}/Production"
    client_id = add_connected_client(sandbox, api, {"name": "CRONUS", "client_url": url})
    person, _ = client_access_page(hub.url, sandbox, client_admin(tenant["domain"]))
    withdrawn = person.post("/client-access/withdraw", data={"firm_id": me["firm_id"]}, follow_redirects=True)
    assert withdrawn.status_code == 200 and "Access withdrawn" in withdrawn.text

    def access() -> str:
        [client] = api.get("/api/v1/clients").json()["clients"]
        assert client["client_id"] == client_id
        state: str = client["access"]["state"]
        return state

    deadline = time.monotonic() + 30
    while access() != "revoked":
        assert time.monotonic() < deadline, "the withdrawal never reached the dashboard"
        time.sleep(0.3)

    crossed = await _accepted(nats_url, me, tenant["id"], "CRONUS again", datetime.now(UTC) - timedelta(hours=1))
    registry = next(p for p in hub.processes if p.name == "registry")
    deadline = time.monotonic() + 30
    # The registry's log is the whole package's: only this invitation's line counts.
    while not any("no access given" in line and str(crossed) in line for line in registry.log().splitlines()):
        assert time.monotonic() < deadline, "the registry never handled the acceptance"
        await asyncio.sleep(0.3)
    assert access() == "revoked"

    await _accepted(nats_url, me, tenant["id"], "CRONUS again", datetime.now(UTC))
    deadline = time.monotonic() + 30
    while access() != "granted":
        assert time.monotonic() < deadline, "an invitation raised after the withdrawal gave no access"
        await asyncio.sleep(0.3)
    assert len(api.get("/api/v1/clients").json()["clients"]) == 1, "the card that was there is the client"


async def test_consent_withdrawn_after_an_invitation_ends_the_access_it_gave(
    hub: Hub, sandbox: Sandbox, nats_url: str
) -> None:
    """The client invited a firm (its administrator gave the app consent to do so) and later
    removed the app's consent in Entra: the access the invitation gives ends at its first
    read, and consent given again for the whole tenant (another firm's Connect) does not
    bring it back. Within the hour after the invitation, Entra may not yet know the consent
    everywhere: a refusal then is not taken for a withdrawal."""
    admin = httpx.Client(base_url=f"{sandbox.base_url}/_sandbox", verify=sandbox.tls())
    tenant = next(t for t in admin.get("/tenants").json()["tenants"] if not t["consented"])
    late_api = hub.client("wes@secondthoughts-partners.example")
    fresh_api = hub.client("xia@freshconsent-partners.example")
    late, fresh = late_api.get("/api/v1/me").json(), fresh_api.get("/api/v1/me").json()

    def access(api: httpx.Client) -> list[str]:
        return [c["access"]["state"] for c in api.get("/api/v1/clients").json()["clients"]]

    def failed(api: httpx.Client) -> bool:
        clients = api.get("/api/v1/clients").json()["clients"]
        return bool(clients) and all(c["state"] == "failed" for c in clients)

    try:
        await _accepted(nats_url, late, tenant["domain"], "Second thoughts", datetime.now(UTC) - timedelta(hours=2))
        await _accepted(nats_url, fresh, tenant["domain"], "Fresh consent", datetime.now(UTC))
        deadline = time.monotonic() + 40
        while access(late_api) != ["revoked"] or not failed(fresh_api):
            assert time.monotonic() < deadline, (access(late_api), access(fresh_api))
            await asyncio.sleep(0.3)
        assert access(fresh_api) == ["granted"]

        admin.put(f"/tenants/{tenant['id']}/consent", json={"consented": True}).raise_for_status()
        for api in (late_api, fresh_api):
            [client] = api.get("/api/v1/clients").json()["clients"]
            assert api.post("/api/v1/refresh", json={"client_id": client["client_id"]}).status_code in (202, 409)

        def fresh_read() -> bool:
            rows = fresh_api.get("/api/v1/dashboard").json()["rows"]
            return bool(rows) and all(row["state"] == "ok" for row in rows)

        while not fresh_read():
            assert time.monotonic() < deadline + 40, fresh_api.get("/api/v1/dashboard").json()["rows"]
            await asyncio.sleep(0.3)
        assert access(late_api) == ["revoked"]
        assert not [row for row in late_api.get("/api/v1/dashboard").json()["rows"] if row["state"] == "ok"]
    finally:
        admin.put(f"/tenants/{tenant['id']}/consent", json={"consented": False}).raise_for_status()
