"""Showing a company's amounts in an accountant's reporting currency: the rule, no I/O.

A company's figures are in its local currency (LCY). Its Business Central holds exchange
rates (currencyExchangeRates), which the fetcher turns into "LCY per unit" of each currency
as of the snapshot's date. An amount in LCY is shown in reporting currency R as
``amount / lcy_per_unit(R)``; when R is the LCY nothing is converted. When the company's BC
has no usable rate for R, the amount cannot be converted, and the reason says why. The SQL
that sorts and filters on converted amounts (``dashboard/queries.py``) follows the same rule.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal
from enum import StrEnum

from pydantic import BaseModel

from hub_common.i18n import N_

# Wide enough for any Money (28 digits) divided by a rate with 15 decimals; halves away from
# zero, as SQL's ROUND does, so a threshold in SQL agrees with the amount shown.
_WIDE = Context(prec=60, rounding=ROUND_HALF_UP)
_CENT = Decimal("0.01")


class NotConverted(StrEnum):
    """Why an amount could not be shown in the reporting currency."""

    # BC did not say the company's local currency (generalLedgerSetup.localCurrencyCode).
    CURRENCY_UNKNOWN = "currency_unknown"
    # The company's figures were read before the hub read exchange rates: refresh it.
    RATES_NOT_READ = "rates_not_read"
    # The client's BC did not give its exchange rates (no such entity, or a bad answer).
    RATES_UNAVAILABLE = "rates_unavailable"
    # The client's BC has no rate for the reporting currency in effect.
    NO_RATE = "no_rate"
    # The rate in effect has a zero or negative amount (or its relational currency has).
    UNUSABLE_RATE = "unusable_rate"


@dataclass(frozen=True)
class RateInEffect:
    """A company's rate for one currency, as the read model keeps it."""

    lcy_per_unit: Decimal | None
    starting_date: dt.date


@dataclass(frozen=True)
class CompanyCurrency:
    """What a company's row knows about converting its amounts into one currency."""

    local_currency: str | None
    # Whether its newest snapshot carried exchange rates, and why not if BC did not give them.
    rates_read: bool
    rates_unavailable: str | None
    # Its rate for the reporting currency, if BC has one.
    rate: RateInEffect | None


@dataclass(frozen=True)
class Factor:
    """Divide an LCY amount by ``lcy_per_unit`` to get the reporting currency (1: the same)."""

    lcy_per_unit: Decimal
    starting_date: dt.date | None  # None: no conversion (the reporting currency is the LCY)


def conversion(company: CompanyCurrency, reporting_currency: str) -> Factor | NotConverted:
    """How a company's LCY amounts become ``reporting_currency``, or why they cannot."""
    if not company.local_currency:
        return NotConverted.CURRENCY_UNKNOWN
    if company.local_currency == reporting_currency:
        return Factor(Decimal(1), None)
    if not company.rates_read:
        return NotConverted.RATES_UNAVAILABLE if company.rates_unavailable else NotConverted.RATES_NOT_READ
    if company.rate is None:
        return NotConverted.NO_RATE
    if company.rate.lcy_per_unit is None or company.rate.lcy_per_unit <= 0:
        return NotConverted.UNUSABLE_RATE
    return Factor(company.rate.lcy_per_unit, company.rate.starting_date)


def convert(amount: Decimal, factor: Factor) -> Decimal:
    """An LCY amount in the reporting currency, to the cent."""
    return (amount / factor.lcy_per_unit).quantize(_CENT, context=_WIDE) if factor.starting_date else amount


# Why, in the accountant's language (``%(currency)s`` is the reporting currency): the
# dashboard's own words (web/static/dashboard.js), so one translation serves both.
REASON_MESSAGES: dict[NotConverted, str] = {
    NotConverted.CURRENCY_UNKNOWN: N_("this company's Business Central does not say its currency"),
    NotConverted.RATES_NOT_READ: N_("no exchange rates read yet: refresh the company"),
    NotConverted.RATES_UNAVAILABLE: N_("this client's Business Central did not give its exchange rates"),
    NotConverted.NO_RATE: N_("no %(currency)s rate in this client's Business Central"),
    NotConverted.UNUSABLE_RATE: N_("the %(currency)s rate in this client's Business Central is zero or negative"),
}


def reason_text(reason: NotConverted, reporting_currency: str, company: CompanyCurrency) -> str:
    """Why, in words for an API client (the page words it from ``reason``)."""
    match reason:
        case NotConverted.CURRENCY_UNKNOWN:
            return "this company's Business Central does not say its local currency"
        case NotConverted.RATES_NOT_READ:
            return "no exchange rates read yet: refresh the company"
        case NotConverted.RATES_UNAVAILABLE:
            return f"exchange rates could not be read: {company.rates_unavailable}"
        case NotConverted.NO_RATE:
            return f"no {reporting_currency} rate in this client's Business Central"
        case NotConverted.UNUSABLE_RATE:
            return f"the {reporting_currency} rate in this client's Business Central is zero or negative"


class ConvertedAmount(BaseModel):
    """One amount of a row in the reporting currency: the original stays alongside."""

    original: str
    original_currency: str | None
    # None when the amount could not be converted (``not_converted`` says why).
    value: str | None
    currency: str
    # Whether a rate was applied (False: the company's own currency is the reporting one).
    converted: bool
    lcy_per_unit: str | None = None
    rate_date: dt.date | None = None
    not_converted: NotConverted | None = None
    message: str | None = None


def converted_amount(amount: Decimal, company: CompanyCurrency, reporting_currency: str) -> ConvertedAmount:
    """The API's view of one amount in the reporting currency."""
    original = format(amount.quantize(_CENT, context=_WIDE), "f")
    outcome = conversion(company, reporting_currency)
    if isinstance(outcome, NotConverted):
        return ConvertedAmount(
            original=original,
            original_currency=company.local_currency or None,
            value=None,
            currency=reporting_currency,
            converted=False,
            not_converted=outcome,
            message=reason_text(outcome, reporting_currency, company),
        )
    value = format(convert(amount, outcome).quantize(_CENT, context=_WIDE), "f")
    if outcome.starting_date is None:
        return ConvertedAmount(
            original=original,
            original_currency=company.local_currency,
            value=value,
            currency=reporting_currency,
            converted=False,
        )
    return ConvertedAmount(
        original=original,
        original_currency=company.local_currency,
        value=value,
        currency=reporting_currency,
        converted=True,
        lcy_per_unit=format(outcome.lcy_per_unit.normalize(), "f"),
        rate_date=outcome.starting_date,
    )
