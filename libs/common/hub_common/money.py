"""Money is Decimal, never float.

Pydantic writes Decimal as a JSON string, so an amount survives every hop exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated

from pydantic import Field

# NaN and infinity are never amounts; refusing them at every boundary keeps sums honest.
Money = Annotated[Decimal, Field(allow_inf_nan=False, max_digits=28)]

ZERO = Decimal("0")
CENT = Decimal("0.01")


def round_money(amount: Decimal) -> Decimal:
    """Round to cents the way BC shows amounts (banker's rounding keeps sums unbiased)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)


def total(amounts: Iterable[Decimal]) -> Decimal:
    """The sum of amounts, to the cent, so every figure serializes the same way ("3705.90")."""
    return round_money(sum(amounts, ZERO))
