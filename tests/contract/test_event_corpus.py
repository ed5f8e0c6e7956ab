"""The audit log is replayed forever: every event type and version the hub ever wrote decodes.

tests/contract/event_corpus holds one frozen envelope per event type and version, written
when that version was current and never edited (older shapes of a version too, such as a
connection from before tenant ids). A change to an event that breaks one of them fails here
until its version is bumped with an upcaster (hub_common.events.UPCASTERS).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hub_common import events
from hub_common.events import (
    EVENT_TYPES,
    ClientAdded,
    ClientRemoved,
    ClientUpdated,
    ConnectionTestRequested,
    Envelope,
    EventData,
    InvalidEvent,
    RefreshRequested,
    decode_event,
)

CORPUS = Path(__file__).parent / "event_corpus"
FROZEN = sorted(CORPUS.glob("*.json"))


def test_every_event_type_has_its_first_version_frozen() -> None:
    frozen = {path.name.split(".")[0] for path in FROZEN if ".v1." in path.name}
    assert frozen == set(EVENT_TYPES), "freeze an envelope of each new event type in tests/contract/event_corpus"


@pytest.mark.parametrize("path", FROZEN, ids=[path.name for path in FROZEN])
def test_a_frozen_event_still_decodes(path: Path) -> None:
    raw = path.read_text()
    stored = json.loads(raw)
    decoded = decode_event(raw)
    assert decoded.type == stored["type"]
    assert str(decoded.id) == stored["id"]
    assert decoded.version == EVENT_TYPES[stored["type"]].version
    # What was stored is kept: every stored field reads back the same (fields added since
    # with a default may appear next to them).
    assert _kept(stored["data"], json.loads(decoded.to_bytes())["data"])


def _kept(stored: object, decoded: object) -> bool:
    if isinstance(stored, dict) and isinstance(decoded, dict):
        return all(key in decoded and _kept(value, decoded[key]) for key, value in stored.items())
    if isinstance(stored, list) and isinstance(decoded, list):
        return len(stored) == len(decoded) and all(map(_kept, stored, decoded))
    return stored == decoded


def test_an_older_version_is_read_through_its_upcaster(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = (CORPUS / "ClientRemoved.v1.json").read_text()
    monkeypatch.setattr(ClientRemoved, "version", 2)
    with pytest.raises(InvalidEvent, match="no upcaster"):
        decode_event(raw)
    seen: list[dict[str, object]] = []

    def to_v2(data: dict[str, object]) -> dict[str, object]:
        seen.append(data)
        return data

    monkeypatch.setitem(events.UPCASTERS, ("ClientRemoved", 1), to_v2)
    decoded = decode_event(raw)
    assert decoded.version == 2 and len(seen) == 1


def test_a_version_newer_than_the_service_knows_is_refused() -> None:
    stored = json.loads((CORPUS / "ClientRemoved.v1.json").read_text())
    stored["version"] = 99
    with pytest.raises(InvalidEvent, match="newer than this service knows"):
        decode_event(json.dumps(stored))


@pytest.mark.parametrize("event_type", ["RefreshRequested", "CompanySnapshot"])
def test_a_field_added_for_a_rolling_upgrade_is_written_only_once_used(event_type: str) -> None:
    """Readers refuse fields they do not know, and during an upgrade a reader of the release
    before still reads these events (the registry reads snapshots, the fetcher refreshes):
    a card whose account numbers never changed writes them as that release did."""
    decoded = decode_event((CORPUS / f"{event_type}.v1.json").read_text())
    assert "accounts_revision" not in json.loads(decoded.to_bytes())["data"]
    changed = decoded.model_copy(update={"data": decoded.data.model_copy(update={"accounts_revision": 3})})
    assert json.loads(changed.to_bytes())["data"]["accounts_revision"] == 3


def test_a_whole_client_discovery_is_written_as_the_release_before_wrote_it() -> None:
    """The registry reads discoveries; one of the release before reads a whole-client
    discovery (the field left out) and refuses only a one-company refresh's."""
    whole_client = decode_event((CORPUS / "CompaniesDiscovered.v1.json").read_text())
    assert json.loads(whole_client.to_bytes()) == json.loads((CORPUS / "CompaniesDiscovered.v1.json").read_text())
    one_company = decode_event((CORPUS / "CompaniesDiscovered.v1.one-company.json").read_text())
    assert json.loads(one_company.to_bytes())["data"]["refresh_company_id"] == "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


def test_a_rule_change_that_renewed_no_webhook_secret_is_written_as_the_release_before_wrote_it() -> None:
    decoded = decode_event((CORPUS / "AlertRuleSet.v1.json").read_text())
    assert "webhook_secret_renewed" not in json.loads(decoded.to_bytes())["data"]
    renewed = decoded.model_copy(update={"data": decoded.data.model_copy(update={"webhook_secret_renewed": True})})
    assert json.loads(renewed.to_bytes())["data"]["webhook_secret_renewed"] is True


@pytest.mark.parametrize("event_type", ["ClientAdded", "ClientUpdated", "RefreshRequested"])
def test_a_client_without_a_time_zone_is_written_as_the_release_before_wrote_it(event_type: str) -> None:
    """The fetcher and gateway of the release before read these during an upgrade; only a
    card that names a time zone writes the field they do not know."""
    decoded = decode_event((CORPUS / f"{event_type}.v1.json").read_text())
    data = decoded.data
    on_card = isinstance(data, ClientAdded | ClientUpdated)

    def zone_written(envelope: Envelope[Any]) -> object:
        written = json.loads(envelope.to_bytes())["data"]
        return (written["card"] if on_card else written).get("time_zone", "left out")

    assert zone_written(decoded) == "left out"
    zoned: EventData = (
        data.model_copy(update={"card": data.card.model_copy(update={"time_zone": "Asia/Tokyo"})})
        if isinstance(data, ClientAdded | ClientUpdated)
        else data.model_copy(update={"time_zone": "Asia/Tokyo"})
    )
    assert zone_written(decoded.model_copy(update={"data": zoned})) == "Asia/Tokyo"


@pytest.mark.parametrize("event_type", ["ClientAdded", "ClientUpdated", "RefreshRequested", "ConnectionTestRequested"])
def test_a_connection_to_the_usual_web_client_is_written_as_the_release_before_wrote_it(event_type: str) -> None:
    """Only a partner-hosted app's connection names its web client host, which the fetcher
    and gateway of the release before do not know; any other host is refused."""
    decoded = decode_event((CORPUS / f"{event_type}.v1.json").read_text())
    data = decoded.data
    assert isinstance(data, ClientAdded | ClientUpdated | RefreshRequested | ConnectionTestRequested)
    connection = data.connection
    assert "web_client_host" not in json.loads(decoded.to_bytes())["data"]["connection"]
    hosted = data.model_copy(
        update={"connection": connection.model_copy(update={"web_client_host": "contoso.bc.dynamics.com"})}
    )
    written = json.loads(decoded.model_copy(update={"data": hosted}).to_bytes())
    assert written["data"]["connection"]["web_client_host"] == "contoso.bc.dynamics.com"
    assert decode_event(json.dumps(written)).data == hosted
    written["data"]["connection"]["web_client_host"] = "attacker.example.com"
    with pytest.raises(InvalidEvent, match="data: 1 errors"):
        decode_event(json.dumps(written))
