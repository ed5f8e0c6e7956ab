"""A client company's health at a glance: a score out of 100, a level, and the reasons.

Each problem takes its weight (points) off 100, scaled by how bad it is:
- the last refresh failed: the whole ``failure`` weight;
- the figures are older than ``stale_after_hours``: the whole ``stale`` weight;
- overdue receivables: ``overdue_receivables`` × (overdue sales ÷ cash, at most 1);
- overdue payables: ``overdue_payables`` × (overdue purchases ÷ cash, at most 1);
- cash runs out within ``runway_weeks`` by the 13-week forecast: ``short_runway`` ×
  (1 − weeks until the balance goes below zero ÷ ``runway_weeks``).
A score of ``good_from`` or more is good, ``watch_from`` or more asks for a look, anything
lower asks for action. The weights are a setting (``HUB_HEALTH_WEIGHTS``, JSON).

The reasons are catalogue messages: ``assess`` gives them in English, and ``in_language``
in the language of the page or stream that shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from hub_common.i18n import N_, Translator, translator

Level = Literal["good", "watch", "act", "unknown"]


class HealthWeights(BaseModel):
    """Points each problem may take off 100, and the limits that define the problems."""

    failure: int = Field(default=40, ge=0, le=100)
    stale: int = Field(default=20, ge=0, le=100)
    stale_after_hours: float = Field(default=26.0, gt=0)
    overdue_receivables: int = Field(default=15, ge=0, le=100)
    overdue_payables: int = Field(default=15, ge=0, le=100)
    short_runway: int = Field(default=30, ge=0, le=100)
    runway_weeks: int = Field(default=8, ge=1, le=13)
    good_from: int = Field(default=80, ge=0, le=100)
    watch_from: int = Field(default=50, ge=0, le=100)


@dataclass(frozen=True)
class HealthInputs:
    state: str
    as_of: datetime | None
    cash: Decimal | None
    overdue_sales: Decimal | None
    overdue_purchases: Decimal | None
    # The forecast's closing balance of each coming week, in order.
    closing_balances: tuple[Decimal, ...]


class Reason(BaseModel):
    """One reason as a catalogue message (marked with N_ where it is made) and its values."""

    message: str
    values: dict[str, str] = {}

    def said(self, t: Translator) -> str:
        return t.gettext(self.message, **self.values)


class Health(BaseModel):
    score: int | None
    level: Level
    reasons: list[str]
    # What ``reasons`` say, as messages to say in another language; not part of the API.
    reason_messages: list[Reason] = Field(default=[], exclude=True)


_ENGLISH = translator("en")


def _health(score: int | None, level: Level, reasons: list[Reason]) -> Health:
    return Health(score=score, level=level, reasons=[r.said(_ENGLISH) for r in reasons], reason_messages=reasons)


def in_language(health: Health, t: Translator) -> Health:
    """The same health, its reasons in ``t``'s language."""
    return health.model_copy(update={"reasons": [reason.said(t) for reason in health.reason_messages]})


def weeks_of_cash(closing_balances: tuple[Decimal, ...]) -> int | None:
    """Weeks until the forecast balance goes below zero (None: not within the forecast)."""
    for week, balance in enumerate(closing_balances):
        if balance < 0:
            return week
    return None


def _share(part: Decimal | None, whole: Decimal | None) -> Decimal:
    if part is None or part <= 0:
        return Decimal(0)
    if whole is None or whole <= 0:
        return Decimal(1)
    return min(Decimal(1), part / whole)


def assess(inputs: HealthInputs, now: datetime, weights: HealthWeights) -> Health:
    if inputs.as_of is None and inputs.state != "failed":
        return _health(None, "unknown", [Reason(message=N_("No figures yet."))])
    penalties: list[tuple[Decimal, Reason]] = []
    if inputs.state == "failed":
        penalties.append((Decimal(weights.failure), Reason(message=N_("The last refresh failed."))))
    if inputs.as_of is not None and (now - inputs.as_of).total_seconds() > weights.stale_after_hours * 3600:
        hours = Reason(
            message=N_("Figures older than %(hours)s hours."), values={"hours": f"{weights.stale_after_hours:g}"}
        )
        penalties.append((Decimal(weights.stale), hours))
    receivables = _share(inputs.overdue_sales, inputs.cash)
    if receivables:
        penalties.append((weights.overdue_receivables * receivables, Reason(message=N_("Overdue sales invoices."))))
    payables = _share(inputs.overdue_purchases, inputs.cash)
    if payables:
        penalties.append((weights.overdue_payables * payables, Reason(message=N_("Overdue purchase invoices."))))
    runway = weeks_of_cash(inputs.closing_balances)
    if runway is not None and runway < weights.runway_weeks:
        shortfall = 1 - Decimal(runway) / weights.runway_weeks
        # weeks_of_cash counts from 0: the first week whose closing balance is below zero.
        runs_out = Reason(
            message=N_("By the forecast, cash runs out in week %(week)s."), values={"week": str(runway + 1)}
        )
        penalties.append((weights.short_runway * shortfall, runs_out))
    score = max(0, round(100 - sum((points for points, _ in penalties), Decimal(0))))
    level: Level = "good" if score >= weights.good_from else "watch" if score >= weights.watch_from else "act"
    return _health(score, level, [reason for _, reason in penalties] or [Reason(message=N_("Nothing to watch."))])
