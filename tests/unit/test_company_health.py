"""How a company's health is weighed: each problem's share of 100, and the levels."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from hub_gateway.dashboard.health import HealthInputs, HealthWeights, assess, weeks_of_cash

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
WEIGHTS = HealthWeights()
HEALTHY = HealthInputs(
    state="ok",
    as_of=NOW - timedelta(hours=1),
    cash=Decimal("100000"),
    overdue_sales=Decimal(0),
    overdue_purchases=Decimal(0),
    closing_balances=tuple(Decimal("100000") for _ in range(13)),
)


def _with(**changes: Any) -> HealthInputs:
    return dataclasses.replace(HEALTHY, **changes)


@pytest.mark.parametrize(
    ("inputs", "score", "level"),
    [
        (HEALTHY, 100, "good"),
        (_with(state="failed"), 60, "watch"),
        (_with(as_of=NOW - timedelta(hours=27)), 80, "good"),
        (_with(as_of=NOW - timedelta(hours=25)), 100, "good"),
        # Overdue receivables worth half the cash: half the weight.
        (_with(overdue_sales=Decimal("50000")), 92, "good"),
        # More overdue than cash: the whole weight, no more.
        (_with(overdue_purchases=Decimal("250000")), 85, "good"),
        (_with(overdue_sales=Decimal(1), cash=Decimal(0)), 85, "good"),
        # The forecast goes below zero in week 3 of 8: (1 - 2/8) of 30 points.
        (_with(closing_balances=(Decimal(10), Decimal(5), Decimal(-1)) + (Decimal(-5),) * 10), 78, "watch"),
        # Already below zero this week: the whole weight.
        (_with(closing_balances=(Decimal(-1),) * 13), 70, "watch"),
        # Below zero only after the runway that matters (week 10 of a 8-week runway): nothing.
        (_with(closing_balances=(Decimal(1),) * 9 + (Decimal(-1),) * 4), 100, "good"),
        (
            _with(state="failed", as_of=NOW - timedelta(days=3), overdue_sales=Decimal("100000")),
            25,
            "act",
        ),
    ],
)
def test_each_problem_takes_its_share(inputs: HealthInputs, score: int, level: str) -> None:
    health = assess(inputs, NOW, WEIGHTS)
    assert (health.score, health.level) == (score, level), health.reasons


def test_no_figures_yet_is_unknown_and_reasons_name_each_problem() -> None:
    assert assess(_with(as_of=None, state="queued"), NOW, WEIGHTS).level == "unknown"
    reasons = assess(_with(state="failed", overdue_sales=Decimal(10)), NOW, WEIGHTS).reasons
    assert reasons == ["The last refresh failed.", "Overdue sales invoices."]
    assert assess(HEALTHY, NOW, WEIGHTS).reasons == ["Nothing to watch."]


def test_the_weights_are_a_setting() -> None:
    strict = HealthWeights(failure=60, good_from=90, watch_from=70)
    health = assess(_with(state="failed"), NOW, strict)
    assert (health.score, health.level) == (40, "act")


def test_weeks_of_cash() -> None:
    assert weeks_of_cash(()) is None
    assert weeks_of_cash((Decimal(1), Decimal(-1))) == 1
    assert weeks_of_cash((Decimal(0),)) is None
