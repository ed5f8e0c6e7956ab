"""Alert rules without a database: thresholds (exact, no hysteresis), episodes starting and
ending, failing for more than Z hours, the runway from the forecast, one client or all of a
firm's, and when a daily digest is due and what it lists."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest

from hub_common.events import CashFigure, CashFlowForecast, CompanyFigures, ForecastWeek, OverdueInvoices
from hub_registry.domain.alerts import (
    Change,
    Comparison,
    Condition,
    DigestSchedule,
    Figure,
    InvalidRule,
    Observation,
    Rule,
    StartedEpisode,
    Subject,
    digest_due,
    digest_of,
    episode_change,
    evaluate,
    failing_hours,
    figure_value,
    observations_of_snapshot,
    runway_weeks,
)

D = Decimal
READ_AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
FIRM = uuid.uuid4()
OTHER_FIRM = uuid.uuid4()
CLIENT = uuid.uuid4()
OTHER_CLIENT = uuid.uuid4()
COMPANY = uuid.uuid4()


def _forecast(opening: str, closings: list[str]) -> CashFlowForecast:
    weeks = [
        ForecastWeek(
            week_start=date(2026, 12, 1) + timedelta(weeks=i), receipts=D(0), payments=D(0), closing_balance=D(value)
        )
        for i, value in enumerate(closings)
    ]
    return CashFlowForecast(
        opening_cash=D(opening), weeks=weeks, low_point=min(D(c) for c in closings), read_at=READ_AT
    )


def _figures(
    cash: str | None = None, overdue: str | None = None, forecast: CashFlowForecast | None = None
) -> CompanyFigures:
    return CompanyFigures(
        cash=CashFigure(accounts=[], total=D(cash), source="api", read_at=READ_AT) if cash is not None else None,
        overdue_sales_invoices=OverdueInvoices(
            count=1, total=D(overdue), largest=[], amount_basis="remaining_amount", read_at=READ_AT
        )
        if overdue is not None
        else None,
        cash_flow_forecast=forecast,
    )


CASH_BELOW_10K = Condition(Figure.CASH, Comparison.BELOW, D("10000"))
OVERDUE_ABOVE_5K = Condition(Figure.OVERDUE_SALES, Comparison.ABOVE, D("5000"))


@pytest.mark.parametrize(
    ("condition", "value", "holds"),
    [
        (CASH_BELOW_10K, "9999.99", True),
        (CASH_BELOW_10K, "10000", False),  # equal never holds: exact, no hysteresis
        (CASH_BELOW_10K, "10000.01", False),
        (CASH_BELOW_10K, "-50", True),
        (OVERDUE_ABOVE_5K, "5000.01", True),
        (OVERDUE_ABOVE_5K, "5000", False),
        (OVERDUE_ABOVE_5K, "0", False),
        (Condition(Figure.FAILING_HOURS, Comparison.ABOVE, D(24)), "24", False),
        (Condition(Figure.FAILING_HOURS, Comparison.ABOVE, D(24)), "24.02", True),
        (Condition(Figure.RUNWAY_WEEKS, Comparison.BELOW, D(4)), "3", True),
        (Condition(Figure.RUNWAY_WEEKS, Comparison.BELOW, D(4)), "4", False),
    ],
)
def test_a_threshold_holds_exactly(condition: Condition, value: str, holds: bool) -> None:
    assert condition.holds(D(value)) is holds


@pytest.mark.parametrize(
    ("value", "open_episode", "change"),
    [
        ("9000", False, Change.STARTS),  # crossing: the episode starts
        ("8000", True, None),  # still holding: the same episode, nothing new
        ("12000", True, Change.ENDS),  # no longer holding: the episode ends
        ("12000", False, None),  # not holding and nothing open
        (None, True, None),  # a figure BC did not give: no observation, the episode stays open
        (None, False, None),
    ],
)
def test_an_episode_starts_when_the_rule_first_holds_and_ends_when_it_stops(
    value: str | None, open_episode: bool, change: Change | None
) -> None:
    assert episode_change(CASH_BELOW_10K, D(value) if value else None, open_episode=open_episode) is change


def test_a_value_wobbling_around_the_threshold_makes_an_episode_per_crossing() -> None:
    open_episode = False
    starts = 0
    for value in ["9999", "10000", "9999", "10001", "9000"]:
        change = episode_change(CASH_BELOW_10K, D(value), open_episode=open_episode)
        if change is Change.STARTS:
            starts += 1
            open_episode = True
        elif change is Change.ENDS:
            open_episode = False
    assert starts == 3


@pytest.mark.parametrize(
    ("opening", "closings", "weeks"),
    [
        ("1000", ["900"] * 13, D(13)),  # never below zero in the forecast
        ("1000", ["500", "100", "-1"] + ["-5"] * 10, D(2)),  # two whole weeks, the third ends below
        ("1000", ["-1"] + ["5"] * 12, D(0)),
        ("-10", ["5"] * 13, D(0)),  # no cash to start with
        ("0", ["0"] * 13, D(13)),  # zero is not below zero
    ],
)
def test_the_runway_is_the_whole_weeks_the_forecast_stays_at_or_above_zero(
    opening: str, closings: list[str], weeks: Decimal
) -> None:
    assert runway_weeks(D(opening), [D(c) for c in closings]) == weeks
    assert figure_value(Figure.RUNWAY_WEEKS, _figures(forecast=_forecast(opening, closings))) == weeks


def test_figures_are_read_from_the_snapshot_and_a_missing_one_is_none() -> None:
    figures = _figures(cash="1234.50", overdue="99")
    assert figure_value(Figure.CASH, figures) == D("1234.50")
    assert figure_value(Figure.OVERDUE_SALES, figures) == D("99")
    assert figure_value(Figure.TAXES_DUE, figures) is None
    assert figure_value(Figure.RUNWAY_WEEKS, figures) is None
    # A snapshot is a successful read: nothing is failing.
    assert figure_value(Figure.FAILING_HOURS, figures) == D(0)


@pytest.mark.parametrize(
    ("since", "now", "hours"),
    [
        (None, READ_AT, D(0)),
        (READ_AT, READ_AT, D(0)),
        (READ_AT, READ_AT + timedelta(hours=24), D("24.00")),
        (READ_AT, READ_AT + timedelta(hours=24, minutes=1), D("24.02")),
        (READ_AT, READ_AT + timedelta(minutes=30, seconds=59), D("0.50")),
        (READ_AT + timedelta(hours=1), READ_AT, D(0)),  # a clock behind the failure: not failing yet
    ],
)
def test_failing_hours_count_from_the_first_failure(since: datetime | None, now: datetime, hours: Decimal) -> None:
    assert failing_hours(since, now) == hours


def test_failing_for_more_than_z_hours_starts_after_z_and_ends_at_the_next_snapshot() -> None:
    rule = Rule(uuid.uuid4(), FIRM, None, Condition(Figure.FAILING_HOURS, Comparison.ABOVE, D(6)))
    whole_client = Subject(CLIENT, None)
    since = READ_AT

    def at(hours: float) -> list[Observation]:
        now = since + timedelta(hours=hours)
        return [Observation(whole_client, Figure.FAILING_HOURS, failing_hours(since, now))]

    assert evaluate([rule], FIRM, at(5), set()) == []
    assert evaluate([rule], FIRM, at(6), set()) == []  # exactly six hours is not more than six
    [started] = evaluate([rule], FIRM, at(6.5), set())
    assert (started.change, started.subject, started.value) == (Change.STARTS, whole_client, D("6.50"))
    assert evaluate([rule], FIRM, at(30), {(rule.id, whole_client)}) == []
    # The client's next snapshot observes 0 hours for the client and for its company.
    seen = observations_of_snapshot(CLIENT, COMPANY, _figures(cash="1"), {Figure.FAILING_HOURS})
    [ended] = evaluate([rule], FIRM, seen, {(rule.id, whole_client)})
    assert (ended.change, ended.subject) == (Change.ENDS, whole_client)


@pytest.mark.parametrize(
    ("still_failing", "observed"),
    [
        ((), {Subject(CLIENT, COMPANY), Subject(CLIENT, None)}),
        ((Subject(CLIENT, COMPANY),), {Subject(CLIENT, None)}),
        ((Subject(CLIENT, None),), {Subject(CLIENT, COMPANY)}),
        ((Subject(CLIENT, COMPANY), Subject(CLIENT, None)), set()),
    ],
)
def test_a_read_observes_no_failure_only_where_no_later_failure_stands(
    still_failing: tuple[Subject, ...], observed: set[Subject]
) -> None:
    seen = observations_of_snapshot(CLIENT, COMPANY, _figures(cash="1"), {Figure.FAILING_HOURS}, still_failing)
    assert {o.subject for o in seen} == observed
    assert all(o.value == 0 for o in seen)


def test_a_rule_for_one_client_sees_only_that_client_and_a_firm_rule_every_client_of_its_firm() -> None:
    one = Rule(uuid.uuid4(), FIRM, CLIENT, CASH_BELOW_10K)
    every = Rule(uuid.uuid4(), FIRM, None, CASH_BELOW_10K)
    elsewhere = Rule(uuid.uuid4(), OTHER_FIRM, None, CASH_BELOW_10K)
    seen = [
        Observation(Subject(CLIENT, COMPANY), Figure.CASH, D(5)),
        Observation(Subject(OTHER_CLIENT, COMPANY), Figure.CASH, D(5)),
    ]
    started = {(c.rule_id, c.subject.client_id) for c in evaluate([one, every, elsewhere], FIRM, seen, set())}
    assert started == {(one.id, CLIENT), (every.id, CLIENT), (every.id, OTHER_CLIENT)}


def test_a_rule_only_observes_its_own_figure() -> None:
    rule = Rule(uuid.uuid4(), FIRM, None, OVERDUE_ABOVE_5K)
    seen = observations_of_snapshot(CLIENT, COMPANY, _figures(cash="1", overdue="100"), {Figure.CASH})
    assert evaluate([rule], FIRM, seen, set()) == []


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Condition(Figure.FAILING_HOURS, Comparison.BELOW, D(5)), "comparison"),
        (lambda: Condition(Figure.FAILING_HOURS, Comparison.ABOVE, D(0)), "threshold"),
        (lambda: Condition(Figure.FAILING_HOURS, Comparison.ABOVE, D(24 * 32)), "threshold"),
        (lambda: Condition(Figure.RUNWAY_WEEKS, Comparison.ABOVE, D(4)), "comparison"),
        (lambda: Condition(Figure.RUNWAY_WEEKS, Comparison.BELOW, D(14)), "threshold"),
        (lambda: Condition(Figure.CASH, Comparison.BELOW, D("NaN")), "threshold"),
        (lambda: DigestSchedule(time(8, 0), "Mars/Olympus_Mons"), "time_zone"),
        (lambda: DigestSchedule(time(8, 0, tzinfo=UTC), "UTC"), "digest_at"),
    ],
)
def test_a_rule_that_cannot_be_kept_names_the_field(make: object, field: str) -> None:
    with pytest.raises(InvalidRule) as refused:
        make()  # type: ignore[operator]
    assert refused.value.field == field


AMSTERDAM_EIGHT = DigestSchedule(time(8, 0), "Europe/Amsterdam")


@pytest.mark.parametrize(
    ("last_sent", "now", "due"),
    [
        # 08:00 in Amsterdam is 07:00 UTC in winter.
        (datetime(2026, 11, 30, 7, 0, tzinfo=UTC), datetime(2026, 12, 1, 6, 59, tzinfo=UTC), False),
        (datetime(2026, 11, 30, 7, 0, tzinfo=UTC), datetime(2026, 12, 1, 7, 0, tzinfo=UTC), True),
        (datetime(2026, 12, 1, 7, 0, tzinfo=UTC), datetime(2026, 12, 1, 15, 0, tzinfo=UTC), False),  # sent today
        # A hub down at 08:00 sends the day's digest when it is back, once.
        (datetime(2026, 11, 28, 7, 0, tzinfo=UTC), datetime(2026, 12, 1, 11, 0, tzinfo=UTC), True),
        # Summer: 08:00 in Amsterdam is 06:00 UTC.
        (datetime(2026, 6, 30, 6, 0, tzinfo=UTC), datetime(2026, 7, 1, 6, 0, tzinfo=UTC), True),
        (datetime(2026, 6, 30, 6, 0, tzinfo=UTC), datetime(2026, 7, 1, 5, 59, tzinfo=UTC), False),
    ],
)
def test_a_daily_digest_is_due_at_its_time_in_its_zone_once_a_day(
    last_sent: datetime, now: datetime, due: bool
) -> None:
    assert digest_due(AMSTERDAM_EIGHT, last_sent=last_sent, now=now) is due


def test_a_digest_lists_the_episodes_started_since_the_last_one_oldest_first() -> None:
    rule = uuid.uuid4()
    last = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    now = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    before = StartedEpisode(uuid.uuid4(), rule, last)
    late = StartedEpisode(uuid.uuid4(), rule, now - timedelta(hours=1))
    early = StartedEpisode(uuid.uuid4(), rule, last + timedelta(hours=1))
    future = StartedEpisode(uuid.uuid4(), rule, now + timedelta(seconds=1))
    assert digest_of([before, late, early, future], last_sent=last, now=now) == [early, late]
