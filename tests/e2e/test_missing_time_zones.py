"""Cards saved before the time zone field, or without one, go by UTC's date: a firm gives
them all a zone at once on Manage Clients; a card with a zone of its own keeps it, and no
other firm's card changes."""

from __future__ import annotations

import sqlite3
import time
import uuid
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from hub_common.events import ActorKind, ClientUpdated
from tests.conftest import Sandbox
from tests.e2e.browser import page_in_time_zone, sign_in
from tests.e2e.conftest import Hub
from tests.support.events import firm_events, requested_refresh

pytestmark = pytest.mark.e2e

SET = "/api/v1/clients/missing-time-zones"


def _card(sandbox: Sandbox, environment: str, **fields: Any) -> dict[str, Any]:
    url = f"{sandbox.web_client}/cronus-sample.onmicrosoft.com/{environment}"
    return {"name": f"Client in {environment}", "client_url": url, **fields}


def _add(api: httpx.Client, card: dict[str, Any]) -> str:
    added = api.post("/api/v1/clients", json=card)
    assert added.status_code == 202, added.text
    client_id = str(added.json()["client_id"])
    deadline = time.monotonic() + 30
    while client_id not in _zones(api):
        assert time.monotonic() < deadline, "the new card never reached the read model"
        time.sleep(0.2)
    return client_id


def _zones(api: httpx.Client) -> dict[str, str | None]:
    return {c["client_id"]: c["card"].get("time_zone") for c in api.get("/api/v1/clients").json()["clients"]}


def _eventually_zones(api: httpx.Client, expected: dict[str, str | None]) -> None:
    deadline = time.monotonic() + 30
    while {client_id: _zones(api).get(client_id) for client_id in expected} != expected:
        assert time.monotonic() < deadline, f"the cards' zones are {_zones(api)}, not {expected}"
        time.sleep(0.2)


def test_cards_without_a_zone_take_the_firms_choice_and_only_they(hub: Hub, sandbox: Sandbox, nats_url: str) -> None:
    api = hub.client("tara@zoneless-accounting.example")
    other_firm = hub.client("uwe@neighbour-accounting.example")
    own_zone = _add(api, _card(sandbox, "Production", time_zone="Pacific/Auckland"))
    without = [_add(api, _card(sandbox, "Sandbox")), _add(api, _card(sandbox, "Staging"))]
    neighbours = _add(other_firm, _card(sandbox, "Production"))

    # Refused on the field, and nothing changes: a zone that is not a place's, none, or more.
    for body in (
        {"time_zone": "US/Eastern"},
        {"time_zone": "Mars/Olympus_Mons"},
        {"time_zone": "../zoneinfo/UTC"},
        {"time_zone": ""},
        {"time_zone": 5},
        {},
        {"time_zone": "Europe/Amsterdam", "client_ids": without},
    ):
        refused = api.post(SET, json=body)
        assert refused.status_code == 422, (body, refused.text)
    assert "IANA time zone" in api.post(SET, json={"time_zone": "US/Eastern"}).text
    time.sleep(1)  # a wrongly accepted change would have reached the read model by now
    assert {client_id: _zones(api)[client_id] for client_id in without} == dict.fromkeys(without)

    given = api.post(SET, json={"time_zone": "Europe/Amsterdam"})
    assert given.status_code == 202, given.text
    assert given.json() == {"clients": 2, "remaining": 0, "to_save_again": []}
    _eventually_zones(api, {own_zone: "Pacific/Auckland", **dict.fromkeys(without, "Europe/Amsterdam")})
    assert _zones(other_firm)[neighbours] is None
    # Asked again, there is nothing left to give a zone to.
    assert api.post(SET, json={"time_zone": "Asia/Tokyo"}).json() == {"clients": 0, "remaining": 0, "to_save_again": []}

    # The audit log says who gave each card its zone; the next refresh counts in it.
    firm_id = uuid.UUID(api.get("/api/v1/me").json()["firm_id"])
    changed = [
        (e.actor, e.data.client_id)
        for e in firm_events(nats_url, firm_id, ClientUpdated.event_type)
        if isinstance(e.data, ClientUpdated) and e.data.card.time_zone == "Europe/Amsterdam"
    ]
    assert sorted(str(client_id) for _, client_id in changed) == sorted(without)
    me = api.get("/api/v1/me").json()["accountant_id"]
    assert {(actor.kind, actor.id) for actor, _ in changed} == {(ActorKind.ACCOUNTANT, me)}
    started = api.post("/api/v1/refresh", json={"client_id": without[0]})
    assert started.status_code == 202, started.text
    refresh_id = uuid.UUID(started.json()["refresh_ids"][0])
    assert requested_refresh(nats_url, firm_id, refresh_id).time_zone == "Europe/Amsterdam"


def test_manage_clients_offers_the_browsers_zone_for_the_cards_without_one(
    page: Page, hub: Hub, sandbox: Sandbox
) -> None:
    email = "vera@zone-page-accounting.example"
    api = hub.client(email)
    without = [_add(api, _card(sandbox, "Production")), _add(api, _card(sandbox, "Sandbox"))]
    # A card saved before names were held to one line: no event may carry it as it is.
    old_card = _add(api, _card(sandbox, "Staging"))
    with sqlite3.connect(hub.registry_database) as database:
        database.execute("UPDATE registry_clients SET name = ? WHERE id = ?", ("Old\ncard", uuid.UUID(old_card).hex))
    with page_in_time_zone(page, "America/Toronto") as zoned:
        sign_in(zoned, hub, email)
        zoned.goto(f"{hub.url}/clients")
        expect(zoned.locator("#missing-time-zones-note")).to_have_text(
            "3 clients have no time zone, so their figures go by the date in UTC "
            "(what is overdue, what is due next week, this month's sales)."
        )
        field = zoned.get_by_role("region", name="Clients without a time zone").get_by_label("Time zone for them")
        expect(field).to_have_value("America/Toronto")
        save = zoned.get_by_role("button", name="Set it on the cards without one")
        field.fill("Mars/Olympus_Mons")
        save.click()
        expect(zoned.locator("#missing-time-zone-error")).to_have_text(
            "'Mars/Olympus_Mons' is not an IANA time zone such as Europe/Amsterdam"
        )
        field.fill("")
        save.click()
        expect(zoned.locator("#missing-time-zone-error")).to_have_text("Name a time zone, such as Europe/Amsterdam.")
        assert {client_id: _zones(api)[client_id] for client_id in without} == dict.fromkeys(without)

        field.fill("America/Toronto")
        save.click()
        saved = zoned.locator("#missing-time-zones-saved")
        expect(saved).to_have_text(
            "America/Toronto is now the time zone of 2 clients. One card was saved under older rules and "
            "takes it once opened and saved: Old card"
        )
        expect(saved.get_by_role("link", name="Old card")).to_have_attribute("href", f"/clients/{old_card}")
        expect(zoned.locator("#missing-time-zones-form")).to_be_hidden()
        _eventually_zones(api, {**dict.fromkeys(without, "America/Toronto"), old_card: None})
        zoned.reload()
        expect(zoned.locator("#missing-time-zones-note")).to_contain_text("One client has no time zone")
