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
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

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


class Health(BaseModel):
    score: int | None
    level: Level
    reasons: list[str]


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
        return Health(score=None, level="unknown", reasons=["No figures yet."])
    penalties: list[tuple[Decimal, str]] = []
    if inputs.state == "failed":
        penalties.append((Decimal(weights.failure), "The last refresh failed."))
    if inputs.as_of is not None and (now - inputs.as_of).total_seconds() > weights.stale_after_hours * 3600:
        penalties.append((Decimal(weights.stale), f"Figures older than {weights.stale_after_hours:g} hours."))
    receivables = _share(inputs.overdue_sales, inputs.cash)
    if receivables:
        penalties.append((weights.overdue_receivables * receivables, "Overdue sales invoices."))
    payables = _share(inputs.overdue_purchases, inputs.cash)
    if payables:
        penalties.append((weights.overdue_payables * payables, "Overdue purchase invoices."))
    runway = weeks_of_cash(inputs.closing_balances)
    if runway is not None and runway < weights.runway_weeks:
        shortfall = 1 - Decimal(runway) / weights.runway_weeks
        penalties.append((weights.short_runway * shortfall, f"Cash runs out in {runway} week(s) by the forecast."))
    score = max(0, round(100 - sum((points for points, _ in penalties), Decimal(0))))
    level: Level = "good" if score >= weights.good_from else "watch" if score >= weights.watch_from else "act"
    return Health(score=score, level=level, reasons=[reason for _, reason in penalties] or ["Nothing to watch."])
