"""Refresh schedules through the real hub: the firm's and a client's own are saved by the
registry, come back through the event log to the read model, and are refused with the rule
when they cannot be kept (tests/e2e/test_roles.py: only owners and admins change them)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Sandbox
from tests.e2e.conftest import Hub
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

EMAIL = "quinn@schedule-accounting.example"


def _schedules(hub: Hub) -> dict[str, Any]:
    schedules: dict[str, Any] = hub.client(EMAIL).get("/api/v1/refresh-schedule").json()
    return schedules


def test_a_firm_and_a_client_schedule_are_kept_and_shown(hub: Hub, sandbox: Sandbox) -> None:
    api = hub.client(EMAIL)
    url = f"{sandbox.web_client}/cronus-sample.onmicrosoft.com/Production"
    created = api.post("/api/v1/clients", json={"name": "Schedule client", "client_url": url})
    assert created.status_code == 202, created.text
    client_id = created.json()["client_id"]
    eventually(
        lambda: any(c["client_id"] == client_id for c in api.get("/api/v1/clients").json()["clients"]) or None,
        "the new client in the read model",
        timeout=15,
    )
    assert _schedules(hub)["firm"] is None  # the hub's default until the firm sets one

    firm = {"every_minutes": 240, "quiet_from": "22:00", "quiet_until": "06:30", "time_zone": "Europe/Amsterdam"}
    assert api.put("/api/v1/refresh-schedule", json=firm).status_code == 202
    own = {"every_minutes": 60, "quiet_from": None, "quiet_until": None, "time_zone": "UTC"}
    assert api.put(f"/api/v1/clients/{client_id}/refresh-schedule", json=own).status_code == 202

    def shown() -> dict[str, Any] | None:
        schedules = _schedules(hub)
        return schedules if schedules["firm"] and schedules["clients"] else None

    schedules = eventually(shown, "the schedules in the read model", timeout=15)
    assert schedules["firm"] == {**firm, "quiet_from": "22:00:00", "quiet_until": "06:30:00"}
    assert schedules["clients"] == [{"client_id": client_id, "client_name": "Schedule client", "schedule": own}]

    assert api.delete(f"/api/v1/clients/{client_id}/refresh-schedule").status_code == 202
    eventually(lambda: _schedules(hub)["clients"] == [] or None, "the client following the firm", timeout=15)


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        ({"every_minutes": 5}, "every_minutes"),
        ({"every_minutes": 60 * 24 * 8}, "every_minutes"),
        ({"every_minutes": 60, "quiet_from": "22:00"}, "quiet_hours"),
        ({"every_minutes": 60, "quiet_from": "22:00", "quiet_until": "22:00"}, "quiet_hours"),
        ({"every_minutes": 60, "time_zone": "Mars/Olympus_Mons"}, "time_zone"),
        ({"every_minutes": 60, "time_zone": "../../etc/passwd"}, "time_zone"),
        ({"every_minutes": 60, "quiet_from": "25:00", "quiet_until": "06:00"}, "quiet_from"),
        ({"every_minutes": "often"}, "every_minutes"),
        # A misspelt field is refused, not ignored (its quiet hours would silently be none).
        ({"every_minutes": 240, "quiet_start": "22:00", "quiet_end": "06:30"}, "quiet_start"),
        ({"every_minutes": 60, "timezone": "Europe/Amsterdam"}, "timezone"),
    ],
)
def test_a_schedule_that_cannot_be_kept_is_refused_naming_what(hub: Hub, schedule: dict[str, Any], field: str) -> None:
    before = _schedules(hub)["firm"]
    answer = hub.client(EMAIL).put("/api/v1/refresh-schedule", json=schedule)
    assert answer.status_code == 422, answer.text
    assert field in answer.text
    assert _schedules(hub)["firm"] == before
