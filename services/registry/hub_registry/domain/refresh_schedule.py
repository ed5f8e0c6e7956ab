"""When a client is refreshed on schedule: every so often, never in its quiet hours.

A firm sets the schedule of all its clients; a client may have its own instead. Quiet hours
are wall-clock times in the schedule's time zone (a client's nightly jobs or maintenance
window, 22:00-06:00 say) and may span midnight. No framework here: the registry's service
layer reads and writes the rows, these rules decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

# BC's own limits make a refresh every few minutes pointless (a refresh of a large client
# takes minutes); a week is the longest interval that still keeps figures of any use.
SHORTEST_INTERVAL = timedelta(minutes=15)
LONGEST_INTERVAL = timedelta(days=7)


class InvalidSchedule(ValueError):
    """A schedule that cannot be kept; the message says which part and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class QuietHours:
    """From ``start`` until ``end``, wall-clock; ``end`` before ``start`` spans midnight."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise InvalidSchedule("quiet_hours", "quiet hours must start and end at different times")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise InvalidSchedule("quiet_hours", "quiet hours are wall-clock times; the time zone is the schedule's")

    def contain(self, wall_clock: time) -> bool:
        if self.start < self.end:
            return self.start <= wall_clock < self.end
        return wall_clock >= self.start or wall_clock < self.end


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` ("Europe/Amsterdam"), or InvalidSchedule."""
    if name not in _time_zone_names():
        raise InvalidSchedule("time_zone", f"{name!r} is not an IANA time zone such as Europe/Amsterdam")
    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError as error:  # listed, yet its file is missing: a broken install
        raise InvalidSchedule("time_zone", f"the time zone {name!r} cannot be loaded") from error


_names: frozenset[str] | None = None


def _time_zone_names() -> frozenset[str]:
    global _names
    if _names is None:
        _names = frozenset(available_timezones())
    return _names


@dataclass(frozen=True)
class RefreshSchedule:
    """``every`` None means no scheduled refresh (only on request, or when BC says something changed)."""

    every: timedelta | None
    quiet_hours: QuietHours | None
    time_zone: str = "UTC"

    def __post_init__(self) -> None:
        if self.every is not None and not SHORTEST_INTERVAL <= self.every <= LONGEST_INTERVAL:
            raise InvalidSchedule(
                "every_minutes",
                f"a scheduled refresh runs every {_minutes(SHORTEST_INTERVAL)} to {_minutes(LONGEST_INTERVAL)} minutes",
            )
        time_zone(self.time_zone)

    def is_quiet(self, now: datetime) -> bool:
        if self.quiet_hours is None:
            return False
        return self.quiet_hours.contain(now.astimezone(time_zone(self.time_zone)).time().replace(tzinfo=None))

    def is_due(self, *, last_run: datetime, now: datetime) -> bool:
        """Whether a client last refreshed on schedule at ``last_run`` (or added then) is due.

        A run that fell in quiet hours happens when they end: the interval counts from the
        last run, not from the time it was due.
        """
        if self.every is None or self.is_quiet(now):
            return False
        return now - last_run >= self.every


def _minutes(interval: timedelta) -> int:
    return int(interval.total_seconds() // 60)


def effective_schedule(firm: RefreshSchedule, client: RefreshSchedule | None) -> RefreshSchedule:
    """A client's own schedule replaces the firm's whole, quiet hours included."""
    return client if client is not None else firm
