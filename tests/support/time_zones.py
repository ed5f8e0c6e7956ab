"""Time zones a test can tell from UTC."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest


def zone_off_utcs_date(now: datetime) -> str:
    """A place's time zone whose date is not UTC's from ``now`` on for at least ten minutes:
    Kiritimati (UTC+14) is a day ahead from 10:00 UTC until midnight, Pago Pago (UTC−11) a day
    behind from midnight until 11:00. Shortly before midnight UTC no zone stays off UTC's date
    across it, and the test says so rather than prove nothing."""
    if (now + timedelta(minutes=10)).date() != now.date():
        pytest.skip("within ten minutes of midnight UTC no time zone stays off UTC's date for the test")
    return "Pacific/Kiritimati" if now.hour >= 10 else "Pacific/Pago_Pago"
