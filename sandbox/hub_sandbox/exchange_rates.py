"""The exchange rates each demo company keeps (BC table 330, API ``currencyExchangeRates``).

Rates are set as a bookkeeper would: a few rows per currency over the last months and one
already entered for tomorrow, each "exchangeRateAmount units of the currency equal
relationalExchangeRateAmount units of the relational currency" (empty: the company's local
currency). Weak currencies are quoted per 100 units, as BC's demo data does. Danish kroner
are quoted against the euro they are pegged to (a relational currency that chains) by
companies outside Denmark and the euro area, and US companies keep no kroner rate at all,
so a reporting currency without a rate is there to see.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

# Units of each currency one euro bought around the end of 2026 (rounded reference rates).
PER_EURO: dict[str, Decimal] = {
    "EUR": Decimal(1),
    "GBP": Decimal("0.8571"),
    "USD": Decimal("1.0830"),
    "DKK": Decimal("7.4590"),
    "SEK": Decimal("11.4750"),
    "NOK": Decimal("11.6920"),
    "CHF": Decimal("0.9420"),
}
# Days before the business date each rate row starts on; negative: entered ahead.
ROW_AGES = (92, 31, 3, -1)
# Quoted per 100 units when one unit is worth less than this much of the local currency.
PER_HUNDRED_BELOW = Decimal("0.2")
SIX_PLACES = Decimal("0.000001")
PEGGED_TO_EURO = "DKK"


@dataclass(frozen=True)
class RateRow:
    currency_code: str
    starting_date: dt.date
    exchange_rate_amount: Decimal
    relational_currency_code: str
    relational_exchange_rate_amount: Decimal


def _drift(seed: str, currency: str, age: int) -> Decimal:
    """A deterministic move of up to ±2% per row, so rates differ by date and company."""
    digest = hashlib.sha256(f"{seed}/{currency}/{age}".encode()).digest()
    return Decimal(1) + (Decimal(int.from_bytes(digest[:2], "big")) / 65535 - Decimal("0.5")) * Decimal("0.04")


def _row(currency: str, relational: str, local_per_unit: Decimal, starting: dt.date) -> RateRow:
    amount = Decimal(100) if local_per_unit < PER_HUNDRED_BELOW else Decimal(1)
    return RateRow(
        currency_code=currency,
        starting_date=starting,
        exchange_rate_amount=amount,
        relational_currency_code=relational,
        relational_exchange_rate_amount=(amount * local_per_unit).quantize(SIX_PLACES, rounding=ROUND_HALF_EVEN),
    )


def rate_rows(local_currency: str, seed: str, business_date: dt.date) -> list[RateRow]:
    """Every rate row of a company whose local currency is ``local_currency``, by currency
    and starting date."""
    if local_currency not in PER_EURO:
        return []
    rows: list[RateRow] = []
    for currency in sorted(PER_EURO):
        if currency == local_currency or (local_currency == "USD" and currency == PEGGED_TO_EURO):
            continue
        chained = currency == PEGGED_TO_EURO and local_currency != "EUR"
        for age in ROW_AGES:
            starting = business_date - dt.timedelta(days=age)
            if chained:
                euro_per_unit = PER_EURO["EUR"] / PER_EURO[currency]
                rows.append(_row(currency, "EUR", euro_per_unit, starting))
            else:
                local_per_unit = PER_EURO[local_currency] / PER_EURO[currency] * _drift(seed, currency, age)
                rows.append(_row(currency, "", local_per_unit, starting))
    return rows
