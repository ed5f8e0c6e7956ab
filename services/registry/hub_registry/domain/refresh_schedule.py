"""When a client is refreshed on schedule: every so often, never in its quiet hours.

A firm sets the schedule of all its clients; a client may have its own instead. Quiet hours
are wall-clock times in the schedule's time zone (a client's nightly jobs or maintenance
window, 22:00-06:00 say) and may span midnight. No framework here: the registry's service
layer reads and writes the rows, these rules decide.

Each client runs in slots of its own: ``phase + k * every`` from a fixed epoch, the phase
derived from the client's id. Clients of one schedule are therefore spread over its
interval, and stay spread however late a tick comes or however many became due at once
(quiet hours ending, an outage, a schedule switched on).
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from hub_common.i18n import N_

# BC's own limits make a refresh every few minutes pointless (a refresh of a large client
# takes minutes); a week is the longest interval that still keeps figures of any use.
SHORTEST_INTERVAL = timedelta(minutes=15)
LONGEST_INTERVAL = timedelta(days=7)
# Quiet hours that leave less than four hours a day would leave a client hardly ever read
# (and 22:00:00.000001-22:00 none at all).
LONGEST_QUIET_HOURS = timedelta(hours=20)
# When quiet hours end, the clients whose slot passed in them are read within this much
# (each at its own phase folded into it), not all in the tick that ends them.
CATCH_UP_SPREAD = timedelta(minutes=5)
# While the hub subscribes to BC's change notices, a client is read at least this often, so
# its subscriptions (3 days) never lapse: a day, plus the hour a daylight-saving change may
# move the end of quiet hours by. Falling due in quiet hours, it waits for their end...
UPKEEP_AT_LEAST_EVERY = timedelta(hours=25)
# ...unless that leaves it unread this long (quiet hours of up to 20 hours, 21 on the night
# clocks change, or the hub was down): then it is read in them. So two reads are at most
# this far apart, and a subscription a read did not renew (it had at least the fetcher's
# HUB_NOTIFICATION_RENEW_BEFORE_SECONDS, 45 hours or more, to live) is renewed at the next,
# with hours to spare for a refresh that waits its turn or is retried.
UPKEEP_IN_QUIET_HOURS_AFTER = timedelta(hours=40)
# A last run recorded further ahead of this replica's clock than this was not made by a
# clock in step with it.
CLOCK_SKEW_TOLERANCE = timedelta(minutes=5)
# Slots are counted from here (a Monday, 00:00 UTC), so they do not depend on when the
# registry started or on the ticks.
_SLOT_EPOCH = datetime(2001, 1, 1, tzinfo=UTC)
# The IANA areas of real places (tzdata's Area/Location names); links such as US/Eastern,
# "localtime", "Factory", "posixrules" or EST are not places, and some mean a different
# zone on each host.
_AREAS = frozenset(
    {"Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia", "Europe", "Indian", "Pacific"}
)


class InvalidSchedule(ValueError):
    """A schedule that cannot be kept; the message says which part and why. ``message`` is
    a catalogue message (hub_common.i18n) with its ``values``; the exception's text is it in
    English."""

    def __init__(self, field: str, message: str, **values: str) -> None:
        super().__init__(message % values if values else message)
        self.field = field
        self.message = message
        self.values = values


@dataclass(frozen=True)
class QuietHours:
    """From ``start`` until ``end``, wall-clock; ``end`` before ``start`` spans midnight.
    Whole minutes (what the page shows and sends back), at most LONGEST_QUIET_HOURS."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise InvalidSchedule(
                "quiet_hours", N_("quiet hours are wall-clock times; the time zone is the schedule's")
            )
        for field, wall_clock in (("quiet_from", self.start), ("quiet_until", self.end)):
            if wall_clock.second or wall_clock.microsecond:
                raise InvalidSchedule(
                    field, N_("%(name)s must be a whole minute such as 22:00, without seconds"), name=field
                )
        if self.start == self.end:
            raise InvalidSchedule("quiet_hours", N_("quiet hours must start and end at different times"))
        if self.length() > LONGEST_QUIET_HOURS:
            raise InvalidSchedule(
                "quiet_hours",
                N_("quiet hours last at most %(hours)s hours a day"),
                hours=str(int(LONGEST_QUIET_HOURS.total_seconds() // 3600)),
            )

    def length(self) -> timedelta:
        minutes = (_minute_of_day(self.end) - _minute_of_day(self.start)) % (24 * 60)
        return timedelta(minutes=minutes)


def _minute_of_day(wall_clock: time) -> int:
    return wall_clock.hour * 60 + wall_clock.minute


def place_time_zone(name: str) -> ZoneInfo:
    """The IANA time zone of a place, ``name`` ("Europe/Amsterdam"), or UTC; else
    InvalidSchedule. What a refresh schedule may name."""
    area, _, location = name.partition("/")
    if not (name == "UTC" or (area in _AREAS and location)):
        raise InvalidSchedule(
            "time_zone", N_("%(name)s is not an IANA time zone such as Europe/Amsterdam"), name=repr(name)
        )
    return time_zone(name)


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` ("Europe/Amsterdam"), or InvalidSchedule."""
    if name not in _time_zone_names():
        raise InvalidSchedule(
            "time_zone", N_("%(name)s is not an IANA time zone such as Europe/Amsterdam"), name=repr(name)
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:  # listed, yet its file is missing or broken
        raise InvalidSchedule("time_zone", N_("the time zone %(name)s cannot be loaded"), name=repr(name)) from error


_names: frozenset[str] | None = None


def _time_zone_names() -> frozenset[str]:
    global _names
    if _names is None:
        _names = frozenset(available_timezones())
    return _names


def _client_seed(client_id: uuid.UUID) -> int:
    """A number fixed for the client, whatever its id's version (a hash, so ids handed out in
    sequence still spread)."""
    return int.from_bytes(hashlib.sha256(client_id.bytes).digest()[:8], "big")


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
                N_("a scheduled refresh runs every %(shortest)s to %(longest)s minutes"),
                shortest=str(_minutes(SHORTEST_INTERVAL)),
                longest=str(_minutes(LONGEST_INTERVAL)),
            )
        time_zone(self.time_zone)

    def check_new(self) -> None:
        """What a schedule being saved must also meet: its time zone is a place's (or UTC),
        not one that means another zone on each host. Rows saved before keep loading (their
        quiet hours would otherwise silently go), as long as their zone does."""
        place_time_zone(self.time_zone)

    def is_quiet(self, now: datetime) -> bool:
        return any(start <= now < end for start, end in self._quiet_periods(now))

    def _quiet_periods(self, now: datetime) -> list[tuple[datetime, datetime]]:
        """The quiet periods (UTC instants) of the local days around ``now``: each day's
        from its start to its end, on the next day when they span midnight."""
        if self.quiet_hours is None:
            return []
        zone_name = self.time_zone
        today = now.astimezone(time_zone(zone_name)).date()
        spans_midnight = self.quiet_hours.end <= self.quiet_hours.start
        periods = []
        for day in (today - timedelta(days=2), today - timedelta(days=1), today):
            end_day = day + timedelta(days=1) if spans_midnight else day
            periods.append(
                (
                    _instant(day, self.quiet_hours.start, zone_name, repeated="first"),
                    _instant(end_day, self.quiet_hours.end, zone_name, repeated="last"),
                )
            )
        return periods

    def phase(self, client_id: uuid.UUID) -> timedelta:
        """Where in each interval the client's slot lies (whole seconds; zero when off)."""
        if self.every is None:
            return timedelta(0)
        return timedelta(seconds=_client_seed(client_id) % max(1, int(self.every.total_seconds())))

    def latest_slot(self, client_id: uuid.UUID, now: datetime) -> datetime:
        """The client's last slot at or before ``now``."""
        assert self.every is not None
        first = _SLOT_EPOCH + self.phase(client_id)
        return first + ((now - first) // self.every) * self.every

    def catch_up_delay(self, client_id: uuid.UUID) -> timedelta:
        """How long after quiet hours end the client's missed slot is caught up: its phase
        folded into CATCH_UP_SPREAD."""
        return timedelta(seconds=int(self.phase(client_id).total_seconds()) % int(CATCH_UP_SPREAD.total_seconds()))

    def is_due(
        self,
        *,
        client_id: uuid.UUID,
        last_run: datetime,
        now: datetime,
        upkeep: bool = False,
        last_every: timedelta | None = None,
    ) -> bool:
        """Whether a client last refreshed on schedule at ``last_run`` (or added then) is due:
        one of its slots passed since, and it is not in its quiet hours. ``last_every`` is
        the interval that run was asked under: after a change, a slot sooner than the
        shorter of the two intervals after that run is skipped.

        A slot that fell in quiet hours is caught up when they end (spread by the client's
        phase); the next run is at the next slot, not an interval after the catch-up. A client
        whose next slot comes within the catch-up's five minutes is read at that slot only,
        not also caught up minutes before it. With
        ``upkeep`` (the hub keeps BC's change subscriptions alive), a client not read for
        UPKEEP_AT_LEAST_EVERY is due, once its quiet hours end if they hold it back (caught up
        as a slot is), and in them once UPKEEP_IN_QUIET_HOURS_AFTER passed. Read in its quiet
        hours each time 25 hours had passed, a client added at night was read there night
        after night, an hour later each time.
        """
        if self.every is None:
            return False
        quiet = self.is_quiet(now)
        if upkeep and now - last_run >= (UPKEEP_IN_QUIET_HOURS_AFTER if quiet else UPKEEP_AT_LEAST_EVERY):
            if quiet:
                return True
            quiet_end = self._last_quiet_end(now)
            if quiet_end is not None and last_run + UPKEEP_AT_LEAST_EVERY < quiet_end:
                return now >= quiet_end + self.catch_up_delay(client_id)
            return True
        if quiet:
            return False
        if last_run > now + CLOCK_SKEW_TOLERANCE:
            # Recorded by a replica whose clock ran ahead (a machine resumed before its clock
            # was set): waiting for a slot after it would leave the client unread that long.
            return True
        slot = self.latest_slot(client_id, now)
        if slot <= last_run:
            return False
        if last_every is not None and last_every != self.every and slot - last_run < min(last_every, self.every):
            # Each interval places the slots anew (the phase is the client's seed modulo the
            # interval), so a changed interval can bring a slot minutes after the last run:
            # changed back and forth, it read the firm's clients every few minutes. After a
            # change, the first slot is one at least the shorter interval after that run.
            return False
        quiet_end = self._last_quiet_end(now)
        if quiet_end is not None and slot < quiet_end and last_run < quiet_end:
            if slot + self.every <= quiet_end + CATCH_UP_SPREAD:
                return False
            return now >= quiet_end + self.catch_up_delay(client_id)
        return True

    def _last_quiet_end(self, now: datetime) -> datetime | None:
        """When quiet hours last ended at or before ``now`` (UTC), if there are any."""
        ended = [end for _, end in self._quiet_periods(now) if end <= now]
        return max(ended) if ended else None


@functools.lru_cache(maxsize=4096)
def _instant(day: date, wall_clock: time, zone_name: str, *, repeated: Literal["first", "last"]) -> datetime:
    """The instant (UTC) a wall-clock time of a local day is, on the days clocks change too.

    Quiet hours are a period, not a set of wall-clock times: on the day clocks go back, a
    time that comes twice starts quiet hours at its first occurrence and ends them at its
    last (a window from 02:30 read clients at 02:00-02:30 once the clock went back, and one
    until 01:30 ended twice); on the day clocks go forward, a time that never comes is the
    moment the clocks jump past it.
    """
    zone = time_zone(zone_name)
    first = datetime.combine(day, wall_clock, tzinfo=zone).astimezone(UTC)  # fold 0
    last = datetime.combine(day, wall_clock, tzinfo=zone).replace(fold=1).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == datetime.combine(day, wall_clock):
        # It exists: once (both the same), or twice (fold 0 is the earlier).
        return first if repeated == "first" else max(first, last)
    # Skipped: fold 1 reads it with the offset after the change, an instant before the gap;
    # the clocks jump past it at the first minute whose wall-clock time is later.
    moment = min(first, last)
    while moment.astimezone(zone).replace(tzinfo=None) < datetime.combine(day, wall_clock):
        moment += timedelta(minutes=1)
    return moment.replace(second=0, microsecond=0)


def _minutes(interval: timedelta) -> int:
    return int(interval.total_seconds() // 60)


def effective_schedule(firm: RefreshSchedule, client: RefreshSchedule | None) -> RefreshSchedule:
    """A client's own schedule replaces the firm's whole, quiet hours included."""
    return client if client is not None else firm
