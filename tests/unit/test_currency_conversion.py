"""Showing a company's amounts in a reporting currency, rule by rule: BC's rate rows in
(currencyExchangeRates, with its own field names), the amount in the reporting currency or
the reason it cannot be shown out. No BC, no database."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from hub_common.events import ExchangeRates, FailureKind
from hub_fetcher.bc.client import BatchRead
from hub_fetcher.bc.entities import CurrencyExchangeRate
from hub_fetcher.bc.failures import FetchFailure
from hub_fetcher.figures.currencies import exchange_rates
from hub_fetcher.refresh import EXCHANGE_RATES, company_exchange_rates
from hub_gateway.accounts.preferences import Preferences
from hub_gateway.dashboard.currency import (
    CompanyCurrency,
    Factor,
    NotConverted,
    RateInEffect,
    conversion,
    convert,
    converted_amount,
)

TODAY = dt.date(2026, 12, 3)
LCY = "GBP"
# What json.loads makes of a tenant's 1e400: infinity, never a rate.
INFINITE_RATE = json.loads(
    '{"currencyCode": "EUR", "startingDate": "2026-12-01", "exchangeRateAmount": 1e400, '
    '"relationalExchangeRateAmount": 1}'
)


def rate(currency: str, start: int, amount: str, relational_amount: str, relational: str = "") -> dict[str, Any]:
    """One BC row: ``amount`` units of ``currency`` = ``relational_amount`` units of the
    relational currency (empty: LCY), from ``start`` days after today on."""
    return {
        "currencyCode": currency,
        "startingDate": (TODAY + dt.timedelta(days=start)).isoformat(),
        "exchangeRateAmount": amount,
        "relationalCurrencyCode": relational,
        "relationalExchangeRateAmount": relational_amount,
    }


def in_reporting_currency(rows: list[dict[str, Any]], amount: str, reporting: str) -> Decimal | NotConverted:
    """The whole path: BC's rows → the snapshot's rates → the read model's rate → the amount."""
    parsed = [CurrencyExchangeRate.model_validate(row) for row in rows]
    rates = exchange_rates(parsed, as_of=TODAY, local_currency=LCY)
    found = next((r for r in rates.rates if r.currency_code == reporting), None)
    company = CompanyCurrency(
        local_currency=LCY,
        rates_read=True,
        rates_unavailable=None,
        rate=RateInEffect(found.lcy_per_unit, found.starting_date) if found else None,
    )
    outcome = conversion(company, reporting)
    return outcome if isinstance(outcome, NotConverted) else convert(Decimal(amount), outcome)


@pytest.mark.parametrize(
    ("rows", "amount", "reporting", "expected"),
    [
        pytest.param([], "1234.56", "GBP", Decimal("1234.56"), id="same currency: nothing converted"),
        pytest.param([rate("EUR", -3, "1", "0.8571")], "857.10", "EUR", Decimal("1000.00"), id="direct rate"),
        pytest.param(
            [rate("DKK", -3, "100", "11.49")], "1149.00", "DKK", Decimal("10000.00"), id="quoted per 100 units"
        ),
        pytest.param(
            [rate("EUR", -3, "1", "0.8571"), rate("DKK", -3, "100", "13.4066", relational="EUR")],
            "1149.08",
            "DKK",
            # 100 DKK = 13.4066 EUR and 1 EUR = 0.8571 GBP: 1 DKK = 0.11490797 GBP.
            Decimal("10000.00"),
            id="chained through a relational currency",
        ),
        pytest.param(
            [rate("EUR", -3, "0.8571", "1", relational="GBP")],
            "1.00",
            "EUR",
            Decimal("0.86"),
            id="relational currency named as the LCY itself",
        ),
        pytest.param(
            [rate("EUR", -92, "1", "0.90"), rate("EUR", -31, "1", "0.88"), rate("EUR", -3, "1", "0.80")],
            "80.00",
            "EUR",
            Decimal("100.00"),
            id="the latest row on or before today",
        ),
        pytest.param(
            [rate("EUR", -3, "1", "0.80"), rate("EUR", 1, "1", "0.40")],
            "80.00",
            "EUR",
            Decimal("100.00"),
            id="a rate starting tomorrow is ignored",
        ),
        pytest.param([rate("EUR", 1, "1", "0.40")], "80.00", "EUR", NotConverted.NO_RATE, id="only a future rate"),
        pytest.param([rate("EUR", -3, "1", "0.8571")], "10.00", "USD", NotConverted.NO_RATE, id="missing rate"),
        pytest.param([rate("EUR", -3, "0", "0.8571")], "10.00", "EUR", NotConverted.UNUSABLE_RATE, id="zero amount"),
        pytest.param(
            [rate("EUR", -3, "1", "0")], "10.00", "EUR", NotConverted.UNUSABLE_RATE, id="zero relational amount"
        ),
        pytest.param([rate("EUR", -3, "-1", "0.85")], "10.00", "EUR", NotConverted.UNUSABLE_RATE, id="negative amount"),
        pytest.param(
            [rate("DKK", -3, "100", "13.4066", relational="EUR")],
            "10.00",
            "DKK",
            NotConverted.UNUSABLE_RATE,
            id="chain to a currency without a rate",
        ),
        pytest.param(
            [rate("DKK", -3, "1", "1", relational="NOK"), rate("NOK", -3, "1", "1", relational="DKK")],
            "10.00",
            "DKK",
            NotConverted.UNUSABLE_RATE,
            id="chain that loops",
        ),
    ],
)
def test_an_amount_in_the_reporting_currency(
    rows: list[dict[str, Any]], amount: str, reporting: str, expected: Decimal | NotConverted
) -> None:
    assert in_reporting_currency(rows, amount, reporting) == expected


@pytest.mark.parametrize(
    ("company", "expected"),
    [
        (CompanyCurrency(local_currency="", rates_read=True, rates_unavailable=None, rate=None), "currency_unknown"),
        (CompanyCurrency(local_currency="GBP", rates_read=False, rates_unavailable=None, rate=None), "rates_not_read"),
        (
            CompanyCurrency(local_currency="GBP", rates_read=False, rates_unavailable="HTTP 404", rate=None),
            "rates_unavailable",
        ),
        (
            CompanyCurrency(local_currency="EUR", rates_read=False, rates_unavailable=None, rate=None),
            Factor(Decimal(1), None),
        ),
    ],
)
def test_what_a_company_row_knows_decides(company: CompanyCurrency, expected: object) -> None:
    assert conversion(company, "EUR") == expected


def test_the_api_keeps_the_original_beside_the_converted_amount() -> None:
    company = CompanyCurrency(
        local_currency="GBP", rates_read=True, rates_unavailable=None, rate=RateInEffect(Decimal("0.8571"), TODAY)
    )
    shown = converted_amount(Decimal("857.1"), company, "EUR")
    assert (shown.original, shown.original_currency, shown.value, shown.currency) == ("857.10", "GBP", "1000.00", "EUR")
    assert shown.converted and shown.lcy_per_unit == "0.8571" and shown.rate_date == TODAY
    without_usd = CompanyCurrency(local_currency="GBP", rates_read=True, rates_unavailable=None, rate=None)
    missing = converted_amount(Decimal("5"), without_usd, "USD")
    assert missing.value is None and missing.not_converted is NotConverted.NO_RATE
    assert missing.message == "no USD rate in this client's Business Central"
    assert missing.original == "5.00"


# ---------------------------------------------------------------- a tenant's answer


def _batch(value: list[dict[str, Any]] | FetchFailure) -> BatchRead:
    if isinstance(value, FetchFailure):
        return BatchRead(collections={}, failures={EXCHANGE_RATES: value})
    return BatchRead(collections={EXCHANGE_RATES: value}, failures={})


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        pytest.param(
            [rate("EUR", -3, "abc", "1")], "exchangeRateAmount: Input should be a valid decimal", id="not a number"
        ),
        pytest.param([INFINITE_RATE], "exchangeRateAmount: Input should be a finite number", id="1e400"),
        pytest.param([rate("EUR", -3, "1e13", "1")], "exchangeRateAmount", id="beyond any rate"),
        pytest.param([rate("eur", -3, "1", "1")], "currencyCode", id="lower-case code"),
        pytest.param([{"currencyCode": "EUR"}], "startingDate", id="fields missing"),
        pytest.param(
            [rate(f"C{n:03d}", -3, "1", "1") for n in range(501)], "rates for 501 currencies", id="too many currencies"
        ),
        pytest.param([rate("EUR\n", -3, "1", "1")], "currencyCode", id="a control character"),
        pytest.param(
            FetchFailure(FailureKind.ENVIRONMENT_NOT_FOUND, http_status=404, message="Resource not found"),
            "currencyExchangeRates (HTTP 404): Resource not found",
            id="no such entity",
        ),
    ],
)
def test_a_bad_answer_leaves_the_rates_unavailable_and_says_why(
    answer: list[dict[str, Any]] | FetchFailure, says: str
) -> None:
    rates = company_exchange_rates(_batch(answer), today=TODAY, local_currency=LCY)
    assert rates.rates == [] and rates.unavailable is not None
    assert says in rates.unavailable


@pytest.mark.parametrize("amount", ["1e-999999", "1e-30"])
def test_a_rate_amount_no_division_can_hold_is_no_rate_and_the_others_stand(amount: str) -> None:
    rows = [rate("EUR", -3, amount, "1"), rate("USD", -3, "1", "0.79")]
    rates = company_exchange_rates(_batch(rows), today=TODAY, local_currency=LCY)
    assert rates.unavailable is None
    assert [(r.currency_code, r.lcy_per_unit) for r in rates.rates] == [("EUR", None), ("USD", Decimal("0.7900"))]


def test_a_good_answer_keeps_one_rate_per_currency_as_of_the_day() -> None:
    rows = [rate("EUR", -31, "1", "0.86"), rate("EUR", -3, "1", "0.8571"), rate("USD", 2, "1", "0.79")]
    rates = company_exchange_rates(_batch(rows), today=TODAY, local_currency=LCY)
    assert rates == ExchangeRates(
        as_of=TODAY,
        rates=[{"currency_code": "EUR", "lcy_per_unit": Decimal("0.8571"), "starting_date": TODAY - dt.timedelta(3)}],
    )


@pytest.mark.parametrize("code", ["EUR", "USD", "XYZ", None])
def test_a_reporting_currency_is_three_capital_letters(code: str | None) -> None:
    assert Preferences(reporting_currency=code).reporting_currency == code


@pytest.mark.parametrize("code", ["eur", "Eur", "EURO", "EU", "EUROEUROEU", "E1R", "", " EUR", "EUR\n"])
def test_anything_else_is_refused_with_the_rule(code: str) -> None:
    with pytest.raises(ValidationError, match="ISO 4217 currency code: three capital letters"):
        Preferences(reporting_currency=code)


@pytest.mark.parametrize("locale", ["en-GB", "de", "pt-BR", "zh-Hant-TW", "es-419", "de-CH-1996", None])
def test_a_locale_is_a_language_tag_browsers_accept(locale: str | None) -> None:
    assert Preferences(locale=locale).locale == locale


@pytest.mark.parametrize("locale", ["en-GB\n", "en-GB\nde", "e", "en_GB", "en-12", "en-GB-x", "de-Latn-Latn"])
def test_a_locale_is_one_language_tag_and_nothing_after_it(locale: str) -> None:
    with pytest.raises(ValidationError, match="language tag"):
        Preferences(locale=locale)
