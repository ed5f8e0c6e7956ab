"""Time zones a test can tell from UTC."""

from __future__ import annotations

from datetime import datetime


def zone_off_utcs_date(now: datetime) -> str:
    """A place's time zone whose date is not UTC's at ``now``, nor for the next hour: Kiritimati
    (UTC+14) is a day ahead from 10:00 UTC, Pago Pago (UTC−11) a day behind until 11:00."""
    return "Pacific/Kiritimati" if now.hour >= 10 else "Pacific/Pago_Pago"
