"""Which date is "today" for a client: the date where its card's time zone says it is."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from hub_common.events import ClientCard
from hub_common.time_zones import client_today

CARD = {"name": "Contoso", "client_url": "https://businesscentral.dynamics.com/contoso.com/Production"}


@pytest.mark.parametrize(
    ("time_zone", "now", "today"),
    [
        # No zone on the card: UTC's date, as before cards had one.
        (None, datetime(2026, 12, 6, 23, 30, tzinfo=UTC), date(2026, 12, 6)),
        # East of UTC the day starts earlier: 23:30 UTC is already the 7th in Auckland (UTC+13).
        ("Pacific/Auckland", datetime(2026, 12, 6, 23, 30, tzinfo=UTC), date(2026, 12, 7)),
        ("Pacific/Auckland", datetime(2026, 12, 6, 10, 59, tzinfo=UTC), date(2026, 12, 6)),
        ("Pacific/Auckland", datetime(2026, 12, 6, 11, 0, tzinfo=UTC), date(2026, 12, 7)),
        # West of UTC it ends later: 03:00 UTC on the 1st is still November in Los Angeles, so
        # this month's sales are November's there.
        ("America/Los_Angeles", datetime(2026, 12, 1, 3, 0, tzinfo=UTC), date(2026, 11, 30)),
        # Summer time: Amsterdam is UTC+2 in July, UTC+1 in December.
        ("Europe/Amsterdam", datetime(2026, 7, 1, 22, 30, tzinfo=UTC), date(2026, 7, 2)),
        ("Europe/Amsterdam", datetime(2026, 12, 31, 22, 30, tzinfo=UTC), date(2026, 12, 31)),
        # The instant decides, whatever zone it is written in.
        ("Asia/Tokyo", datetime(2026, 12, 6, 20, 0, tzinfo=timezone(timedelta(hours=-5))), date(2026, 12, 7)),
        ("UTC", datetime(2026, 12, 6, 23, 59, tzinfo=UTC), date(2026, 12, 6)),
    ],
)
def test_today_is_the_date_where_the_client_is(time_zone: str | None, now: datetime, today: date) -> None:
    assert client_today(time_zone, now) == today


@pytest.mark.parametrize("time_zone", ["Pacific/Atlantis", "America", "Etc"])
def test_a_zone_this_host_cannot_load_counts_days_in_utc(time_zone: str) -> None:
    """An older tzdata than the registry's must not fail every refresh of the client."""
    assert client_today(time_zone, datetime(2026, 12, 6, 23, 30, tzinfo=UTC)) == date(2026, 12, 6)


def test_a_card_is_written_without_a_zone_it_does_not_name() -> None:
    assert "time_zone" not in ClientCard.model_validate(CARD).model_dump(mode="json")
    assert ClientCard.model_validate({**CARD, "time_zone": "Europe/Amsterdam"}).time_zone == "Europe/Amsterdam"


@pytest.mark.parametrize(
    "name", ["", "Europe/Amsterdam ", "../../etc/passwd", "/UTC", "Europe//Paris", "x" * 65, "Europe/Amsterdam\n"]
)
def test_a_card_refuses_what_cannot_be_a_zone_name_in_a_sentence(name: str) -> None:
    with pytest.raises(ValidationError) as refused:
        ClientCard.model_validate({**CARD, "time_zone": name})
    [error] = refused.value.errors()
    assert error["loc"] == ("time_zone",)
    assert "is not an IANA time zone such as Europe/Amsterdam" in error["msg"]
