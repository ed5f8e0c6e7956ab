"""Which date it is for a client: its card's time zone decides "today" for its figures
(what is overdue, due next week, sold this month) and a workbook's default date."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub_common.logging import get_logger

logger = get_logger(__name__)


def client_today(time_zone: str | None, now: datetime) -> date:
    """The date at ``now`` where the client is (its card's IANA ``time_zone``; None: UTC).

    The registry admits only zones its tzdata knows, and every service ships the same
    tzdata; should a service still not know one, it counts days in UTC, as before cards had
    a zone, rather than failing every refresh of the client.
    """
    if time_zone is None:
        return now.astimezone(UTC).date()
    try:
        zone = ZoneInfo(time_zone)
    # An area's name ("America") is tzdata's directory: IsADirectoryError, an OSError.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        logger.warning("client's time zone unknown here; its days are counted in UTC", time_zone=time_zone)
        return now.astimezone(UTC).date()
    return now.astimezone(zone).date()
