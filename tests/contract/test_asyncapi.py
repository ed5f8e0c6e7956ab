"""The committed event catalogue (docs/asyncapi.json) is what FastStream generates now."""

from __future__ import annotations

import json
from pathlib import Path

from hub_common.catalogue import asyncapi_document
from hub_common.events import EVENT_TYPES

CATALOGUE = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


def test_committed_catalogue_is_current() -> None:
    generated = json.loads(json.dumps(asyncapi_document(), sort_keys=True))
    committed = json.loads(CATALOGUE.read_text())
    assert committed == generated, "run `make asyncapi` and commit docs/asyncapi.json"


def test_every_event_type_is_in_the_catalogue() -> None:
    channels = asyncapi_document()["channels"]
    assert set(channels) == set(EVENT_TYPES)
    for name, channel in channels.items():
        assert channel["address"].startswith("hub.{firm_id}."), name
