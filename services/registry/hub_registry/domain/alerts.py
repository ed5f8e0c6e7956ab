"""When an alert rule holds, when an episode of it starts and ends, and when a digest is due.

A rule watches one figure of every company of one client (or of every client of the firm)
and compares it with a threshold. An *episode* is the stretch of time the rule holds for one
company: it starts when an observation first finds the rule holding and ends at the first
observation that finds it not holding. The hub alerts once per episode, at its start.

The comparisons are exact and without hysteresis: "below 10,000" holds for 9,999.99 and not
for 10,000, and a figure that wobbles around the threshold starts a new episode each time it
crosses. A figure the snapshot does not carry (BC would not give it) is no observation at all:
an open episode stays open and none starts.

No framework here: the registry's service layer reads and writes the rows, these rules decide.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum

from hub_common.events import CompanyFigures
from hub_common.i18n import N_
from hub_registry.domain.refresh_schedule import InvalidSchedule, time_zone

# A forecast has 13 weekly buckets: a runway can be told in weeks up to 13.
FORECAST_WEEKS = 13
# Failing longer than a month is a client that is gone; no rule needs to wait longer.
LONGEST_FAILURE_HOURS = 24 * 31


class Figure(StrEnum):
    """What a rule watches: a figure of a company's snapshot, or how long its refreshes fail."""

    CASH = "cash"
    OVERDUE_SALES = "overdue_sales"
    OVERDUE_PURCHASES = "overdue_purchases"
    PURCHASES_DUE_NEXT_WEEK = "purchases_due_next_week"
    TAXES_DUE = "taxes_due"
    SALES_THIS_MONTH = "sales_this_month"
    FORECAST_LOW_POINT = "forecast_low_point"
    # Whole weeks the cash-flow forecast stays at or above zero (see ``runway_weeks``).
    RUNWAY_WEEKS = "runway_weeks"
    # Hours since the first failed refresh with no successful one after it.
    FAILING_HOURS = "failing_hours"


MONEY_FIGURES = frozenset(
    {
        Figure.CASH,
        Figure.OVERDUE_SALES,
        Figure.OVERDUE_PURCHASES,
        Figure.PURCHASES_DUE_NEXT_WEEK,
        Figure.TAXES_DUE,
        Figure.SALES_THIS_MONTH,
        Figure.FORECAST_LOW_POINT,
    }
)


class Comparison(StrEnum):
    BELOW = "below"
    ABOVE = "above"


class Delivery(StrEnum):
    """An email the moment an episode starts, or one a day listing the episodes started."""

    IMMEDIATE = "immediate"
    DAILY_DIGEST = "daily_digest"


class InvalidRule(ValueError):
    """A rule that cannot be kept; ``message`` is a catalogue message (hub_common.i18n) with
    its ``values``, ``field`` names the part that is wrong."""

    def __init__(self, field: str, message: str, **values: str) -> None:
        super().__init__(message % values if values else message)
        self.field = field
        self.message = message
        self.values = values


@dataclass(frozen=True)
class Condition:
    """``figure`` ``comparison`` ``threshold``: "cash below 10000", "failing_hours above 24"."""

    figure: Figure
    comparison: Comparison
    threshold: Decimal

    def __post_init__(self) -> None:
        if not self.threshold.is_finite():
            raise InvalidRule("threshold", N_("the threshold must be a number"))
        if self.figure is Figure.FAILING_HOURS:
            if self.comparison is not Comparison.ABOVE:
                raise InvalidRule("comparison", N_("a client fails for more than a number of hours: use above"))
            if not 0 < self.threshold <= LONGEST_FAILURE_HOURS:
                raise InvalidRule(
                    "threshold",
                    N_("failing for more than %(lowest)s to %(highest)s hours"),
                    lowest="0",
                    highest=str(LONGEST_FAILURE_HOURS),
                )
        if self.figure is Figure.RUNWAY_WEEKS:
            if self.comparison is not Comparison.BELOW:
                raise InvalidRule("comparison", N_("a runway is watched for running short: use below"))
            if not 1 <= self.threshold <= FORECAST_WEEKS:
                raise InvalidRule(
                    "threshold",
                    N_("a runway is told in %(lowest)s to %(highest)s weeks"),
                    lowest="1",
                    highest=str(FORECAST_WEEKS),
                )

    def holds(self, value: Decimal) -> bool:
        """Exact: below is strictly less, above strictly more; equal never holds."""
        return value < self.threshold if self.comparison is Comparison.BELOW else value > self.threshold


def runway_weeks(opening_cash: Decimal, closing_balances: list[Decimal]) -> Decimal:
    """Whole weeks the forecast's cash stays at or above zero: 0 when there is none to start
    with (or week 1 already ends below zero), 13 when no week of the forecast ends below it.

    "Runway under 4 weeks" then holds exactly when the forecast goes below zero within its
    first four weeks.
    """
    if opening_cash < 0:
        return Decimal(0)
    for week, balance in enumerate(closing_balances):
        if balance < 0:
            return Decimal(week)
    return Decimal(len(closing_balances))


def figure_value(figure: Figure, figures: CompanyFigures) -> Decimal | None:
    """The value a rule compares, from a snapshot's figures; None when the snapshot lacks it."""
    match figure:
        case Figure.CASH:
            return figures.cash.total if figures.cash else None
        case Figure.OVERDUE_SALES:
            return figures.overdue_sales_invoices.total if figures.overdue_sales_invoices else None
        case Figure.OVERDUE_PURCHASES:
            return figures.overdue_purchase_invoices.total if figures.overdue_purchase_invoices else None
        case Figure.PURCHASES_DUE_NEXT_WEEK:
            due = figures.purchase_invoices_due_next_week
            return due.amount if due else None
        case Figure.TAXES_DUE:
            return figures.taxes_due.amount if figures.taxes_due else None
        case Figure.SALES_THIS_MONTH:
            return figures.sales_this_month.amount if figures.sales_this_month else None
        case Figure.FORECAST_LOW_POINT:
            return figures.cash_flow_forecast.low_point if figures.cash_flow_forecast else None
        case Figure.RUNWAY_WEEKS:
            forecast = figures.cash_flow_forecast
            if forecast is None:
                return None
            return runway_weeks(forecast.opening_cash, [week.closing_balance for week in forecast.weeks])
        case Figure.FAILING_HOURS:
            # A snapshot is a successful read: whatever failed before is over.
            return Decimal(0)


def failing_hours(failing_since: datetime | None, now: datetime) -> Decimal:
    """Hours (to the minute) a company or client has been failing; 0 when it is not."""
    if failing_since is None or now <= failing_since:
        return Decimal(0)
    minutes = int((now - failing_since).total_seconds() // 60)
    return (Decimal(minutes) / Decimal(60)).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class Rule:
    """A rule as the evaluation needs it: which clients it watches and its condition."""

    id: uuid.UUID
    firm_id: uuid.UUID
    # None: every client of the firm.
    client_id: uuid.UUID | None
    condition: Condition

    def watches(self, firm_id: uuid.UUID, client_id: uuid.UUID) -> bool:
        """A rule only ever sees its own firm's clients."""
        return firm_id == self.firm_id and (self.client_id is None or self.client_id == client_id)


@dataclass(frozen=True)
class Subject:
    """What an episode is about: one company of a client, or the client as a whole (a failed
    discovery reads no company)."""

    client_id: uuid.UUID
    company_id: uuid.UUID | None


@dataclass(frozen=True)
class Observation:
    """A value of one figure of one subject, seen at a moment (None: not given)."""

    subject: Subject
    figure: Figure
    value: Decimal | None


class Change(StrEnum):
    STARTS = "starts"
    ENDS = "ends"


@dataclass(frozen=True)
class EpisodeChange:
    rule_id: uuid.UUID
    subject: Subject
    change: Change
    value: Decimal


def episode_change(condition: Condition, value: Decimal | None, *, open_episode: bool) -> Change | None:
    """Whether one observation starts an episode, ends the open one, or changes nothing."""
    if value is None:
        return None
    holds = condition.holds(value)
    if holds and not open_episode:
        return Change.STARTS
    if not holds and open_episode:
        return Change.ENDS
    return None


def evaluate(
    rules: list[Rule],
    firm_id: uuid.UUID,
    observations: list[Observation],
    open_episodes: set[tuple[uuid.UUID, Subject]],
) -> list[EpisodeChange]:
    """Every episode that starts or ends with these observations of one firm.

    ``open_episodes`` holds (rule id, subject) of the episodes open before them.
    """
    changes: list[EpisodeChange] = []
    for rule in rules:
        for observation in observations:
            if observation.figure is not rule.condition.figure:
                continue
            if not rule.watches(firm_id, observation.subject.client_id):
                continue
            change = episode_change(
                rule.condition, observation.value, open_episode=(rule.id, observation.subject) in open_episodes
            )
            if change is not None:
                assert observation.value is not None
                changes.append(EpisodeChange(rule.id, observation.subject, change, observation.value))
    return changes


def observations_of_snapshot(
    client_id: uuid.UUID,
    company_id: uuid.UUID,
    figures: CompanyFigures,
    watched: set[Figure],
    still_failing: Collection[Subject] = (),
) -> list[Observation]:
    """What a company's snapshot says about each watched figure.

    A snapshot also ends the client's failure as a whole (its discovery worked), so a
    failing-hours rule observes 0 for the client as well as for the company; except for a
    subject in ``still_failing``: one whose failure came after this read (the streams keep
    no order between snapshots and failures), which this older read does not end.
    """
    company = Subject(client_id, company_id)
    seen = [
        Observation(company, figure, figure_value(figure, figures))
        for figure in sorted(watched)
        if not (figure is Figure.FAILING_HOURS and company in still_failing)
    ]
    whole_client = Subject(client_id, None)
    if Figure.FAILING_HOURS in watched and whole_client not in still_failing:
        seen.append(Observation(whole_client, Figure.FAILING_HOURS, Decimal(0)))
    return seen


# ---------------------------------------------------------------- digests


def checked_time_zone(name: str) -> str:
    """An IANA time zone a rule may name (its digest's), or InvalidRule."""
    try:
        time_zone(name)
    except InvalidSchedule as error:
        raise InvalidRule("time_zone", error.message, **error.values) from error
    return name


@dataclass(frozen=True)
class DigestSchedule:
    """A daily digest at a wall-clock time in an IANA time zone."""

    at: time
    time_zone: str

    def __post_init__(self) -> None:
        if self.at.tzinfo is not None:
            raise InvalidRule("digest_at", N_("the digest's time is a wall-clock time; the time zone is the rule's"))
        checked_time_zone(self.time_zone)


def digest_due(schedule: DigestSchedule, *, last_sent: datetime, now: datetime) -> bool:
    """Whether the day's digest is due: its time today (in its zone) has passed and no
    digest was sent since. A hub that was down at that time sends it when it comes back."""
    zone = time_zone(schedule.time_zone)
    local_now = now.astimezone(zone)
    day = local_now.date() if local_now.time().replace(tzinfo=None) >= schedule.at else local_now.date() - timedelta(1)
    # The latest digest moment at or before now; a wall-clock time a daylight-saving change
    # skips is taken as the same time of the new offset (zoneinfo's fold rules).
    latest = datetime.combine(day, schedule.at, tzinfo=zone)
    return last_sent < latest <= now


@dataclass(frozen=True)
class StartedEpisode:
    episode_id: uuid.UUID
    rule_id: uuid.UUID
    started_at: datetime


def digest_of(episodes: list[StartedEpisode], *, last_sent: datetime, now: datetime) -> list[StartedEpisode]:
    """The episodes a digest lists: started after the last digest, up to now, oldest first."""
    return sorted(
        (episode for episode in episodes if last_sent < episode.started_at <= now), key=lambda e: e.started_at
    )
