"""The schedule's rules, without a database: intervals, quiet hours (across midnight, in the
schedule's time zone, through a daylight-saving change) and the limits; each client's slots
(its phase plus multiples of the interval), which keep many clients spread over the interval
and after quiet hours, whatever the ticks."""

from __future__ import annotations

import itertools
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from hub_registry.domain.refresh_schedule import (
    InvalidSchedule,
    QuietHours,
    RefreshSchedule,
    effective_schedule,
    time_zone,
)

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
    at = datetime.combine(datetime(2026, 12, 1).date(), wall_clock, tzinfo=UTC)
    assert RefreshSchedule(timedelta(hours=1), quiet).is_quiet(at) is quiet_then


def test_quiet_hours_are_the_time_zones_wall_clock_through_a_daylight_saving_change() -> None:
    schedule = RefreshSchedule(every=timedelta(hours=1), quiet_hours=NIGHT, time_zone="Europe/Amsterdam")
    # 22:30 in Amsterdam: 21:30 UTC in winter, 20:30 UTC in summer.
    assert schedule.is_quiet(datetime(2026, 12, 1, 21, 30, tzinfo=UTC))
    assert not schedule.is_quiet(datetime(2026, 12, 1, 20, 30, tzinfo=UTC))
    assert schedule.is_quiet(datetime(2026, 7, 1, 20, 30, tzinfo=UTC))


def test_due_once_a_slot_of_its_own_passed_since_the_last_run_and_not_before() -> None:
    schedule = RefreshSchedule(every=timedelta(hours=4), quiet_hours=None)
    client = uuid.UUID(int=7)
    slot = schedule.latest_slot(client, datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    assert timedelta(0) <= datetime(2026, 12, 1, 12, 0, tzinfo=UTC) - slot < timedelta(hours=4)
    assert (slot - datetime(2001, 1, 1, tzinfo=UTC)) % timedelta(hours=4) == schedule.phase(client)
    last = slot + timedelta(seconds=30)  # this slot's run
    assert not schedule.is_due(client_id=client, last_run=last, now=slot + timedelta(hours=3, minutes=59))
    assert schedule.is_due(client_id=client, last_run=last, now=slot + timedelta(hours=4))
    off = RefreshSchedule(every=None, quiet_hours=None)
    assert not off.is_due(client_id=client, last_run=last, now=last + timedelta(days=30))


def test_a_clients_phase_is_fixed_by_its_id_and_within_the_interval() -> None:
    client = uuid.UUID("5b1e0f3c-2d5e-4c1a-9a57-0b6f3b0e8d11")
    hourly, daily = RefreshSchedule(timedelta(hours=1), None), RefreshSchedule(timedelta(days=1), None)
    assert hourly.phase(client) == RefreshSchedule(timedelta(hours=1), NIGHT).phase(client)
    assert timedelta(0) <= hourly.phase(client) < timedelta(hours=1)
    assert timedelta(0) <= daily.phase(client) < timedelta(days=1)
    assert hourly.phase(client) == daily.phase(client) % timedelta(hours=1)


def _run(
    schedule: RefreshSchedule, clients: list[uuid.UUID], *, start: datetime, days: int, tick: timedelta
) -> dict[uuid.UUID, list[datetime]]:
    """Ticks every ``tick`` for ``days``, as the registry does: each due client runs then."""
    last_runs = dict.fromkeys(clients, start)
    runs: dict[uuid.UUID, list[datetime]] = {client: [] for client in clients}
    now = start
    while now < start + timedelta(days=days):
        now += tick
        for client in clients:
            if schedule.is_due(client_id=client, last_run=last_runs[client], now=now):
                last_runs[client] = now
                runs[client].append(now)
    return runs


CLIENTS = [uuid.UUID(int=random.Random(index).getrandbits(128)) for index in range(60)]
MONDAY = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("every", "tick", "largest_tick_share"),
    [
        (timedelta(minutes=15), timedelta(seconds=60), 0.2),
        (timedelta(hours=1), timedelta(seconds=60), 0.1),
        (timedelta(hours=4), timedelta(seconds=60), 0.1),
        # A slow, irregular tick does not make runs drift or bunch either.
        (timedelta(hours=4), timedelta(seconds=59), 0.1),
    ],
)
def test_clients_all_due_at_once_spread_over_the_interval_and_stay_so(
    every: timedelta, tick: timedelta, largest_tick_share: float
) -> None:
    # All share one last run (an upgrade, an outage, a schedule switched on): all become due.
    runs = _run(RefreshSchedule(every, None), CLIENTS, start=MONDAY, days=2, tick=tick)
    later = Counter(at for client_runs in runs.values() for at in client_runs[1:])
    assert max(later.values()) <= max(2, largest_tick_share * len(CLIENTS))
    for client, client_runs in runs.items():
        gaps = {b - a for a, b in itertools.pairwise(client_runs[1:])}
        assert all(every - tick < gap < every + tick for gap in gaps), client  # no drift, no skips
        phase = RefreshSchedule(every, None).phase(client)
        assert all(
            timedelta(0) <= (at - datetime(2001, 1, 1, tzinfo=UTC) - phase) % every < tick for at in client_runs[1:]
        )


@pytest.mark.parametrize(
    ("every", "quiet", "zone"),
    [
        (timedelta(hours=4), NIGHT, "UTC"),
        (timedelta(hours=4), NIGHT, "Europe/Amsterdam"),
        (timedelta(hours=1), QuietHours(time(18, 0), time(8, 0)), "America/New_York"),
        (timedelta(minutes=15), LUNCH, "UTC"),
    ],
)
def test_clients_held_by_quiet_hours_are_caught_up_spread_and_then_keep_their_slots(
    every: timedelta, quiet: QuietHours, zone: str
) -> None:
    schedule = RefreshSchedule(every, quiet, zone)
    runs = _run(schedule, CLIENTS, start=MONDAY, days=3, tick=timedelta(seconds=60))
    every_run = [at for client_runs in runs.values() for at in client_runs]
    assert not any(schedule.is_quiet(at) for at in every_run)
    per_tick = Counter(every_run)
    # When quiet hours end the catch-up takes five ticks (a minute each), not one: no tick
    # asks for more than a third of the clients (it asked for all of them).
    assert max(per_tick.values()) <= len(CLIENTS) / 3
    busiest = max(per_tick, key=lambda at: per_tick[at])
    assert len([at for at in per_tick if timedelta(0) <= at - busiest < timedelta(minutes=5)]) >= 4
    for client, client_runs in runs.items():
        delay = schedule.catch_up_delay(client)
        assert timedelta(0) <= delay < timedelta(minutes=5)
        for at in client_runs:
            on_slot = (at - datetime(2001, 1, 1, tzinfo=UTC) - schedule.phase(client)) % every < timedelta(minutes=1)
            caught_up = schedule.is_quiet(at - delay - timedelta(minutes=1))
            assert on_slot or caught_up, (client, at)


def test_the_catch_up_after_quiet_hours_waits_for_the_clients_share_of_five_minutes() -> None:
    schedule = RefreshSchedule(timedelta(hours=4), NIGHT)
    client = next(c for c in CLIENTS if schedule.catch_up_delay(c) >= timedelta(minutes=2))
    end = datetime(2026, 12, 2, 6, 30, tzinfo=UTC)
    last = end - timedelta(hours=9)  # before quiet hours; a slot passed in them
    assert schedule.latest_slot(client, end) > last
    assert not schedule.is_due(client_id=client, last_run=last, now=end)
    assert schedule.is_due(client_id=client, last_run=last, now=end + schedule.catch_up_delay(client))


# 4 hours: a client whose slot falls at 06:35 exactly; 61 and 17 minutes: slots anywhere.
@pytest.mark.parametrize("every", [timedelta(hours=4), timedelta(minutes=61), timedelta(minutes=17)])
def test_each_client_is_read_once_in_the_five_minutes_after_quiet_hours(every: timedelta) -> None:
    """Caught up, or at its own slot when that comes within the five minutes: not both (a
    client caught up at 06:30 was read again at its 06:35 slot)."""
    schedule = RefreshSchedule(every, NIGHT)
    # The last one's 4-hourly slots are at 02:35, 06:35, ... (phase 2:35, caught up at once).
    clients = [uuid.UUID(int=random.Random(index).getrandbits(128)) for index in range(500)]
    clients.append(uuid.UUID("00000000-0000-0000-0000-000000008143"))
    end = datetime(2026, 12, 2, 6, 30, tzinfo=UTC)
    last_run = end - timedelta(hours=9)  # before quiet hours: a slot of each passed in them
    after_quiet: dict[uuid.UUID, list[datetime]] = {}
    for client in clients:
        last, runs = last_run, []
        for minute in range(6):
            now = end + timedelta(minutes=minute)
            if schedule.is_due(client_id=client, last_run=last, now=now):
                last = now
                runs.append(now)
        after_quiet[client] = runs
    assert all(len(client_runs) == 1 for client_runs in after_quiet.values()), {
        client: client_runs for client, client_runs in after_quiet.items() if len(client_runs) != 1
    }


def test_changing_the_interval_back_and_forth_reads_clients_no_more_often_than_the_shorter_interval() -> None:
    """An admin rotating the firm's interval through 15 to 22 minutes every minute: each
    change places the clients' slots anew, but after a change a client's first slot is one
    at least the shorter interval after its last run (it was read every 5 minutes)."""
    last = {client: (MONDAY - timedelta(minutes=15), timedelta(minutes=15)) for client in CLIENTS}
    runs: Counter[uuid.UUID] = Counter()
    for minute in range(120):
        now = MONDAY + timedelta(minutes=minute + 1)
        schedule = RefreshSchedule(timedelta(minutes=15 + minute % 8), None)
        for client in CLIENTS:
            last_run, last_every = last[client]
            if schedule.is_due(client_id=client, last_run=last_run, now=now, last_every=last_every):
                assert schedule.every is not None
                last[client] = (now, schedule.every)
                runs[client] += 1
    # Eight 15-minute intervals in the two hours, and the first run made late.
    assert max(runs.values()) <= 120 // 15 + 1, runs.most_common(3)


def test_an_unchanged_interval_keeps_its_slots_after_a_catch_up_or_a_late_run() -> None:
    """The rule for a changed interval leaves the others alone: the slot after a run made
    late (or a catch-up after quiet hours) is still the next one."""
    schedule = RefreshSchedule(timedelta(hours=1), None)
    client = CLIENTS[0]
    slot = schedule.latest_slot(client, MONDAY)
    late = slot + timedelta(minutes=50)
    every = timedelta(hours=1)
    assert schedule.is_due(client_id=client, last_run=late, now=slot + every, last_every=every)


def test_the_upkeep_reads_a_client_after_25_hours_and_in_quiet_hours_only_after_40() -> None:
    # Quiet hours as long as may be, the upkeep's slot in them, and last run long ago.
    quiet = QuietHours(time(6, 0), time(2, 0))
    daily = RefreshSchedule(timedelta(days=1), quiet)
    client = CLIENTS[0]
    quiet_now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert daily.is_quiet(quiet_now)
    assert not daily.is_due(client_id=client, last_run=quiet_now - timedelta(hours=25), now=quiet_now, upkeep=True)
    assert not daily.is_due(client_id=client, last_run=quiet_now - timedelta(hours=39), now=quiet_now, upkeep=True)
    assert daily.is_due(client_id=client, last_run=quiet_now - timedelta(hours=40), now=quiet_now, upkeep=True)
    assert not daily.is_due(client_id=client, last_run=quiet_now - timedelta(hours=40), now=quiet_now)
    awake_now = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
    assert not daily.is_quiet(awake_now)
    assert daily.is_due(client_id=client, last_run=awake_now - timedelta(hours=25), now=awake_now, upkeep=True)


def _upkeep_reads(schedule: RefreshSchedule, client: uuid.UUID, added: datetime, days: int) -> list[datetime]:
    """When a client added at ``added`` is read by the upkeep, ticking every 5 minutes."""
    last, runs = added, [added]
    for step in range(1, days * 24 * 12):
        now = added + timedelta(minutes=5 * step)
        if schedule.is_due(client_id=client, last_run=last, now=now, upkeep=True):
            last = now
            runs.append(now)
    return runs


@pytest.mark.parametrize("added_at_minute", [0, 90, 211, 359])
def test_a_client_added_in_quiet_hours_is_never_read_in_them_by_the_upkeep(added_at_minute: int) -> None:
    """A "never on schedule" client while the hub subscribes to change notices: the upkeep
    makes its schedule daily. Added at night, it was read 25 hours later, in quiet hours
    again, and so an hour later every night, for as many nights as quiet hours last."""
    zone = ZoneInfo("Europe/Amsterdam")
    upkept = RefreshSchedule(timedelta(days=1), QuietHours(time(22, 0), time(6, 0)), time_zone="Europe/Amsterdam")
    for client in CLIENTS[:4]:
        added = datetime(2026, 12, 7, 0, 0, tzinfo=zone).astimezone(UTC) + timedelta(minutes=added_at_minute)
        runs = _upkeep_reads(upkept, client, added, days=6)
        read = runs[1:]
        assert read and not any(upkept.is_quiet(at) for at in read), [at.astimezone(zone) for at in read]
        assert all(later - earlier <= timedelta(hours=40, minutes=5) for earlier, later in pairwise(runs))


@pytest.mark.parametrize("added_at_hour", [1, 3, 5])
def test_with_the_longest_quiet_hours_on_the_night_clocks_change_reads_are_40_hours_apart_at_most(
    added_at_hour: int,
) -> None:
    """Quiet 20 hours a day, 21 the night clocks go back: a read due in them that waited for
    their end would come 46 hours after the last, past the subscriptions' renewal margin."""
    zone = ZoneInfo("Europe/Amsterdam")
    upkept = RefreshSchedule(timedelta(days=1), QuietHours(time(6, 0), time(2, 0)), time_zone="Europe/Amsterdam")
    for client in CLIENTS[:4]:
        added = datetime(2026, 10, 23, added_at_hour, 0, tzinfo=zone).astimezone(UTC)
        runs = _upkeep_reads(upkept, client, added, days=5)
        assert len(runs) > 3
        assert all(later - earlier <= timedelta(hours=40, minutes=5) for earlier, later in pairwise(runs))


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: RefreshSchedule(every=timedelta(minutes=14), quiet_hours=None), "every_minutes"),
        (lambda: RefreshSchedule(every=timedelta(days=8), quiet_hours=None), "every_minutes"),
        (lambda: RefreshSchedule(every=None, quiet_hours=None, time_zone="Europe/Atlantis"), "time_zone"),
        (lambda: RefreshSchedule(every=None, quiet_hours=None, time_zone="../../etc/passwd"), "time_zone"),
        (lambda: QuietHours(time(9, 0), time(9, 0)), "quiet_hours"),
        (lambda: QuietHours(time(22, 0, 0, 1), time(22, 0)), "quiet_from"),
        (lambda: QuietHours(time(22, 0), time(6, 30, 15)), "quiet_until"),
        (lambda: QuietHours(time(22, 0), time(18, 1)), "quiet_hours"),  # 20 hours and a minute
        (lambda: QuietHours(time(0, 0), time(23, 59)), "quiet_hours"),
        (lambda: RefreshSchedule(every=None, quiet_hours=None, time_zone="localtime").check_new(), "time_zone"),
        (lambda: RefreshSchedule(every=None, quiet_hours=None, time_zone="Factory").check_new(), "time_zone"),
        (lambda: RefreshSchedule(every=None, quiet_hours=None, time_zone="posixrules").check_new(), "time_zone"),
        (lambda: RefreshSchedule(every=None, quiet_hours=None, time_zone="EST").check_new(), "time_zone"),
        (lambda: RefreshSchedule(every=None, quiet_hours=None, time_zone="Etc/GMT+5").check_new(), "time_zone"),
        (lambda: QuietHours(time(9, 0, tzinfo=UTC), time(10, 0)), "quiet_hours"),
    ],
)
def test_a_schedule_that_cannot_be_kept_says_which_part(make: object, field: str) -> None:
    with pytest.raises(InvalidSchedule) as refused:
        make()  # type: ignore[operator]
    assert refused.value.field == field


def test_quiet_hours_of_whole_minutes_up_to_20_hours_and_real_places_are_kept() -> None:
    assert QuietHours(time(22, 0), time(18, 0)).length() == timedelta(hours=20)
    assert QuietHours(time(6, 0), time(22, 0)).length() == timedelta(hours=16)
    for zone in ("UTC", "Europe/Amsterdam", "America/Argentina/Buenos_Aires", "Pacific/Auckland"):
        assert RefreshSchedule(every=None, quiet_hours=None, time_zone=zone).time_zone == zone


def test_a_clients_own_schedule_replaces_the_firms_whole() -> None:
    firm = RefreshSchedule(every=timedelta(hours=1), quiet_hours=NIGHT)
    own = RefreshSchedule(every=timedelta(hours=2), quiet_hours=None)
    assert effective_schedule(firm, own) is own
    assert effective_schedule(firm, None) is firm


def test_only_a_schedule_being_saved_insists_on_a_place_saved_ones_and_alerts_keep_any_listed_zone() -> None:
    # Saved before the rule: still kept, quiet hours and all; alert rules too.
    assert RefreshSchedule(every=None, quiet_hours=NIGHT, time_zone="US/Eastern").is_quiet(
        datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
    )
    assert time_zone("Etc/UTC").key == "Etc/UTC"
    with pytest.raises(InvalidSchedule):
        RefreshSchedule(every=None, quiet_hours=None, time_zone="US/Eastern").check_new()


def test_quiet_hours_hold_through_the_hour_that_comes_twice() -> None:
    """Amsterdam, 26 October 2025: at 03:00 CEST (01:00 UTC) the clocks go back to 02:00.
    Quiet from 02:30, clients were read at 02:00-02:30 CET, inside the window set for the
    client's nightly jobs, since that wall-clock time was before its start."""
    schedule = RefreshSchedule(timedelta(minutes=15), QuietHours(time(2, 30), time(6, 0)), "Europe/Amsterdam")
    assert not schedule.is_quiet(datetime(2025, 10, 26, 0, 29, tzinfo=UTC))  # 02:29 CEST
    for minute in (0, 12, 27, 45):
        assert schedule.is_quiet(datetime(2025, 10, 26, 1, minute, tzinfo=UTC)), minute  # 02:xx CET
    assert schedule.is_quiet(datetime(2025, 10, 26, 4, 59, tzinfo=UTC))  # 05:59 CET
    assert not schedule.is_quiet(datetime(2025, 10, 26, 5, 0, tzinfo=UTC))  # 06:00 CET


def _most_in_one_tick(schedule: RefreshSchedule, start: datetime) -> int:
    """How many clients the busiest tick of a day of one-minute ticks from ``start`` read."""
    runs = _run(schedule, CLIENTS, start=start, days=1, tick=timedelta(minutes=1))
    return max(Counter(at for client_runs in runs.values() for at in client_runs).values())


def test_quiet_hours_ending_in_the_hour_that_comes_twice_end_once_at_its_last() -> None:
    """New York, 2 November 2025: at 02:00 EDT (06:00 UTC) the clocks go back to 01:00.
    Quiet until 01:30, they ended at 01:30 EDT, began again at 01:00 EST, and ended again:
    the catch-up of every client came in one tick at the second end."""
    schedule = RefreshSchedule(timedelta(hours=1), QuietHours(time(22, 0), time(1, 30)), "America/New_York")
    for at in (datetime(2025, 11, 2, 5, 45, tzinfo=UTC), datetime(2025, 11, 2, 6, 15, tzinfo=UTC)):
        assert schedule.is_quiet(at), at
    end = datetime(2025, 11, 2, 6, 30, tzinfo=UTC)  # 01:30 EST
    assert not schedule.is_quiet(end)
    assert schedule._last_quiet_end(end + timedelta(minutes=3)) == end
    assert _most_in_one_tick(schedule, datetime(2025, 11, 1, 12, 0, tzinfo=UTC)) <= len(CLIENTS) / 3


def test_quiet_hours_ending_at_a_time_the_clocks_skip_end_when_they_jump_past_it() -> None:
    """Amsterdam, 30 March 2025: at 02:00 CET (01:00 UTC) the clocks jump to 03:00. Quiet
    until 02:30, the end was taken half an hour late, and until then yesterday's end was
    the last one: every client was caught up in one tick."""
    schedule = RefreshSchedule(timedelta(hours=1), QuietHours(time(23, 0), time(2, 30)), "Europe/Amsterdam")
    jump = datetime(2025, 3, 30, 1, 0, tzinfo=UTC)
    assert schedule.is_quiet(jump - timedelta(minutes=1))
    assert not schedule.is_quiet(jump)
    assert schedule._last_quiet_end(jump + timedelta(minutes=2)) == jump
    assert _most_in_one_tick(schedule, datetime(2025, 3, 29, 12, 0, tzinfo=UTC)) <= len(CLIENTS) / 3


def test_quiet_hours_in_a_zone_whose_clocks_move_half_an_hour() -> None:
    """Lord Howe Island, 6 April 2025: at 02:00 (+11) the clocks go back to 01:30 (+10:30)."""
    schedule = RefreshSchedule(timedelta(hours=1), QuietHours(time(1, 45), time(3, 0)), "Australia/Lord_Howe")
    first_0145 = datetime(2025, 4, 5, 14, 45, tzinfo=UTC)  # 01:45 +11
    assert schedule.is_quiet(first_0145)
    assert schedule.is_quiet(datetime(2025, 4, 5, 15, 5, tzinfo=UTC))  # 01:35 +10:30, the second time
    assert not schedule.is_quiet(datetime(2025, 4, 5, 16, 30, tzinfo=UTC))  # 03:00 +10:30


def test_a_run_recorded_by_a_clock_far_ahead_does_not_hold_the_client_back() -> None:
    """A replica a day ahead held the schedule for one tick and recorded its runs a day
    ahead: by every other replica's clock no slot came after them for a day."""
    schedule = RefreshSchedule(timedelta(hours=1), None)
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    client = CLIENTS[0]
    assert schedule.is_due(client_id=client, last_run=now + timedelta(days=1), now=now)
    # A clock a little ahead is a clock in step: its run counts as it is.
    just_ran = schedule.latest_slot(client, now) + timedelta(minutes=2)
    assert not schedule.is_due(client_id=client, last_run=just_ran, now=just_ran - timedelta(minutes=1))
