"""The schedule's rules, without a database: intervals, quiet hours (across midnight, in the
schedule's time zone, through a daylight-saving change) and the limits."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from hub_registry.domain.refresh_schedule import InvalidSchedule, QuietHours, RefreshSchedule, effective_schedule

NIGHT = QuietHours(time(22, 0), time(6, 30))
LUNCH = QuietHours(time(12, 0), time(13, 0))


@pytest.mark.parametrize(
    ("quiet", "wall_clock", "quiet_then"),
    [
        (NIGHT, time(21, 59), False),
        (NIGHT, time(22, 0), True),
        (NIGHT, time(0, 0), True),
        (NIGHT, time(6, 29), True),
        (NIGHT, time(6, 30), False),
        (LUNCH, time(11, 59), False),
        (LUNCH, time(12, 0), True),
        (LUNCH, time(13, 0), False),
    ],
)
def test_quiet_hours_hold_from_their_start_until_their_end(
    quiet: QuietHours, wall_clock: time, quiet_then: bool
) -> None:
    assert quiet.contain(wall_clock) is quiet_then


def test_quiet_hours_are_the_time_zones_wall_clock_through_a_daylight_saving_change() -> None:
    schedule = RefreshSchedule(every=timedelta(hours=1), quiet_hours=NIGHT, time_zone="Europe/Amsterdam")
    # 22:30 in Amsterdam: 21:30 UTC in winter, 20:30 UTC in summer.
    assert schedule.is_quiet(datetime(2026, 12, 1, 21, 30, tzinfo=UTC))
    assert not schedule.is_quiet(datetime(2026, 12, 1, 20, 30, tzinfo=UTC))
    assert schedule.is_quiet(datetime(2026, 7, 1, 20, 30, tzinfo=UTC))


def test_due_an_interval_after_the_last_run_and_not_before() -> None:
    schedule = RefreshSchedule(every=timedelta(hours=4), quiet_hours=None)
    last = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert not schedule.is_due(last_run=last, now=last + timedelta(hours=3, minutes=59))
    assert schedule.is_due(last_run=last, now=last + timedelta(hours=4))
    off = RefreshSchedule(every=None, quiet_hours=None)
    assert not off.is_due(last_run=last, now=last + timedelta(days=30))


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: RefreshSchedule(every=timedelta(minutes=14), quiet_hours=None), "every_minutes"),
        (lambda: RefreshSchedule(every=timedelta(days=8), quiet_hours=None), "every_minutes"),
        (lambda: RefreshSchedule(every=None, quiet_hours=None, time_zone="Europe/Atlantis"), "time_zone"),
        (lambda: RefreshSchedule(every=None, quiet_hours=None, time_zone="../../etc/passwd"), "time_zone"),
        (lambda: QuietHours(time(9, 0), time(9, 0)), "quiet_hours"),
        (lambda: QuietHours(time(9, 0, tzinfo=UTC), time(10, 0)), "quiet_hours"),
    ],
)
def test_a_schedule_that_cannot_be_kept_says_which_part(make: object, field: str) -> None:
    with pytest.raises(InvalidSchedule) as refused:
        make()  # type: ignore[operator]
    assert refused.value.field == field


def test_a_clients_own_schedule_replaces_the_firms_whole() -> None:
    firm = RefreshSchedule(every=timedelta(hours=1), quiet_hours=NIGHT)
    own = RefreshSchedule(every=timedelta(hours=2), quiet_hours=None)
    assert effective_schedule(firm, own) is own
    assert effective_schedule(firm, None) is firm
