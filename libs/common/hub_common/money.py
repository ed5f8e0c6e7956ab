"""Money is Decimal, never float.

Pydantic writes Decimal as a JSON string, so an amount survives every hop exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated

from pydantic import AfterValidator, Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

# NaN and infinity are never amounts; refusing them at every boundary keeps sums honest.
# 28 digits: what Decimal holds exactly and PostgreSQL's numeric columns take.
MAX_DIGITS = 28
# An amount as the hub writes it: a plain decimal string ("223055.01"), at most 26 digits.
_PLAIN_AMOUNT = r"^-?[0-9]{1,20}(\.[0-9]{1,6})?$"


def exponent_within_digits(value: Decimal) -> Decimal:
    """Refuses an exponent beyond ``MAX_DIGITS`` either way. A zero's digits do not count
    its exponent, so ``0E+999999999999999999`` passes ``max_digits`` and ``decimal_places``;
    PostgreSQL's numeric refuses it, which made a saved threshold of it fail every use."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and not -MAX_DIGITS <= exponent <= MAX_DIGITS:
        raise ValueError(f"the number's exponent must be between -{MAX_DIGITS} and {MAX_DIGITS}")
    return value


def stored_number(text: str) -> Decimal:
    """A number the hub stored as text, as an ``ExactNumber`` reads it: a zero saved before
    exponents were bounded (``0E+999999999999999999``) is 0, so what was saved then (an
    alert rule's threshold, a saved view's) is still read, shown and deleted."""
    value = Decimal(text)
    return Decimal(0) if value.is_zero() else value


# Any exact number entering the hub (a threshold, an amount a tenant reports): finite, of
# at most ``MAX_DIGITS`` digits, with an exponent within them.
ExactNumber = Annotated[
    Decimal, Field(allow_inf_nan=False, max_digits=MAX_DIGITS), AfterValidator(exponent_within_digits)
]


class _MoneyRules:
    """Money's validation: a Decimal, finite, of at most ``MAX_DIGITS`` digits (not an
    ``ExactNumber``: events stored before that rule must still be read as they were).

    Counting a Decimal's digits costs more than making it, and a snapshot carries a hundred
    amounts: in a message (JSON), an amount spelled plainly (``_PLAIN_AMOUNT``, checked by
    the validator's own pattern) cannot have too many, so only other spellings are counted.
    Both paths give the same verdict and the same value; a Python value is always counted.
    """

    @classmethod
    def __get_pydantic_core_schema__(cls, source: object, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        counted = core_schema.decimal_schema(allow_inf_nan=False, max_digits=MAX_DIGITS)
        plain = core_schema.chain_schema(
            [
                core_schema.str_schema(pattern=_PLAIN_AMOUNT, strict=True),
                core_schema.decimal_schema(allow_inf_nan=False),
            ]
        )
        return core_schema.json_or_python_schema(
            json_schema=core_schema.union_schema([plain, counted], mode="left_to_right"),
            python_schema=counted,
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return handler(core_schema.decimal_schema(allow_inf_nan=False, max_digits=MAX_DIGITS))


Money = Annotated[Decimal, _MoneyRules]

ZERO = Decimal("0")
CENT = Decimal("0.01")


def round_money(amount: Decimal) -> Decimal:
    """Round to cents as BC rounds amounts: its Round() goes to the nearest, a half away
    from zero (100.05 at a rate of 0.5 is 50.03 there, not the 50.02 of banker's rounding)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


MILL = Decimal("0.001")


def as_booked(amount: Decimal) -> Decimal:
    """An amount as BC books it: to the cent ("3705.90", so every figure serializes the same
    way), or to the mill where its currency has three decimals (KWD, BHD, OMR, JOD, TND),
    whose third decimal rounding to the cent would lose. Finer digits, which BC never books,
    are rounded to the cent."""
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent <= -3:
        # Never longer than the amount itself, so within Decimal's 28 digits.
        mills = amount.quantize(MILL)
        if mills == amount and mills != mills.quantize(CENT):
            return mills
    return round_money(amount)


def total(amounts: Iterable[Decimal]) -> Decimal:
    """The sum of booked amounts, as booked (``as_booked``)."""
    return as_booked(sum(amounts, ZERO))
