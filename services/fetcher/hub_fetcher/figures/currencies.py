"""A company's exchange rates as of a date, from its BC rows: pure functions, no I/O.

BC (table 330 "Currency Exchange Rate") keeps rows per currency and starting date:
``exchangeRateAmount`` units of the currency equal ``relationalExchangeRateAmount`` units of
the relational currency, from ``startingDate`` on. An empty relational currency is the
company's local currency (LCY); another one chains: convert to it, then on to LCY. The rate
in effect on a date is the row with the latest starting date on or before it.

The snapshot keeps only that: per currency, LCY per unit of the currency (None when BC's
amounts make it unusable: zero, negative, or a chain that does not end in LCY).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal

from hub_common.events import MAX_EXCHANGE_RATES, ExchangeRate, ExchangeRates
from hub_common.money import round_money
from hub_fetcher.bc.entities import CurrencyExchangeRate

# The snapshot's precision for LCY per unit, and the largest it may be.
LCY_PER_UNIT_QUANTUM = Decimal("1e-15")
MAX_LCY_PER_UNIT = Decimal(10**15)
# Far more links than BC setups use (EUR pegs, then LCY); a longer chain is a loop.
MAX_CHAIN = 5
_PRECISE = Context(prec=60)


def rows_in_effect(rows: Sequence[CurrencyExchangeRate], as_of: dt.date) -> dict[str, CurrencyExchangeRate]:
    """Per currency, the row with the latest starting date on or before ``as_of`` (a row
    starting later is ignored). Two rows of one date: the first BC listed wins."""
    in_effect: dict[str, CurrencyExchangeRate] = {}
    for row in rows:
        if row.starting_date > as_of:
            continue
        current = in_effect.get(row.currency_code)
        if current is None or row.starting_date > current.starting_date:
            in_effect[row.currency_code] = row
    return in_effect


def lcy_per_unit(currency: str, in_effect: dict[str, CurrencyExchangeRate], local_currency: str) -> Decimal | None:
    """How much LCY one unit of ``currency`` is worth, following relational currencies; None
    when a rate on the way is zero, negative or missing, or the chain loops."""
    factor = Decimal(1)
    code = currency
    for _ in range(MAX_CHAIN):
        row = in_effect.get(code)
        if row is None or row.exchange_rate_amount <= 0 or row.relational_exchange_rate_amount <= 0:
            return None
        # A tenant's amounts may be as odd as 1E-999999: an overflow or a quotient beyond
        # the precision is no rate, and must not fail the company's figures.
        try:
            factor = _PRECISE.multiply(
                factor, _PRECISE.divide(row.relational_exchange_rate_amount, row.exchange_rate_amount)
            )
            relational = row.relational_currency_code
            if not relational or relational == local_currency:
                rounded = factor.quantize(LCY_PER_UNIT_QUANTUM, rounding=ROUND_HALF_EVEN, context=_PRECISE)
                return rounded if 0 < rounded <= MAX_LCY_PER_UNIT else None
        except ArithmeticError:
            return None
        code = relational
    return None


def exchange_rates(rows: Sequence[CurrencyExchangeRate], *, as_of: dt.date, local_currency: str) -> ExchangeRates:
    """The snapshot's rates: each currency BC has a rate for on ``as_of`` (LCY itself left
    out), sorted by code."""
    in_effect = rows_in_effect(rows, as_of)
    if len(in_effect) > MAX_EXCHANGE_RATES:
        return rates_unavailable(as_of, f"currencyExchangeRates: rates for {len(in_effect)} currencies")
    return ExchangeRates(
        as_of=as_of,
        rates=[
            ExchangeRate(
                currency_code=code,
                lcy_per_unit=lcy_per_unit(code, in_effect, local_currency),
                starting_date=row.starting_date,
            )
            for code, row in sorted(in_effect.items())
            if code != local_currency
        ],
    )


def rates_unavailable(as_of: dt.date, reason: str) -> ExchangeRates:
    """No rates: BC did not give them, and why (the rest of the snapshot still arrives)."""
    return ExchangeRates(as_of=as_of, unavailable=reason[:500])


@dataclass(frozen=True)
class ToLocalCurrency:
    """A document's amount, in the document's currency (BC's ``currencyCode``; empty: the
    company's own), in the company's local currency at the rate in effect today: what the
    figures add up, since an invoice of 10,000 USD in a euro company is not 10,000 EUR.

    Today's rate values an open amount as a revaluation would; BC's own "(LCY)" amounts
    keep the posting date's rate. Without a usable rate (BC gave no rates, or none for the
    currency, which posting a document in it would have required) the amount is taken as
    it is, as before the hub read currencies; the snapshot's exchange rates say why.
    """

    local_currency: str
    lcy_per_unit: Mapping[str, Decimal | None]

    @classmethod
    def at(cls, rates: ExchangeRates, local_currency: str) -> ToLocalCurrency:
        return cls(local_currency, {rate.currency_code: rate.lcy_per_unit for rate in rates.rates})

    def __call__(self, amount: Decimal, currency: str) -> Decimal:
        if not currency or currency == self.local_currency:
            return amount
        factor = self.lcy_per_unit.get(currency)
        if factor is None:
            return amount
        return round_money(_PRECISE.multiply(amount, factor))


# Amounts already in the company's currency (tests, and books without other currencies).
UNCONVERTED = ToLocalCurrency("", {})
