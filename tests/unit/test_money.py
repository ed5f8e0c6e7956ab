"""Money's two paths in a message (a plainly spelled amount, and any other spelling) give the
same verdict and the same value as counting every amount's digits."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated

import pytest
from pydantic import BaseModel, Field, ValidationError

from hub_common.money import MAX_DIGITS, ExactNumber, Money, round_money


class _Amount(BaseModel):
    amount: Money


class _CountedAmount(BaseModel):
    amount: Annotated[Decimal, Field(allow_inf_nan=False, max_digits=MAX_DIGITS)]


class _ExactNumber(BaseModel):
    amount: ExactNumber


SPELLINGS = [
    # plain: the pattern's side
    "0",
    "-0",
    "0.01",
    "-223055.01",
    "94216.9",
    "12345678901234567890.123456",
    "00000000000000000001.5",
    # other spellings: counted
    "1" + "0" * 20,
    "99999999999999999999999999.99",
    "999999999999999999999999999.99",
    "1" + "0" * 28,
    "0.1234567",
    "1." + "0" * 27,
    "1E+3",
    "1e-2",
    "1E-999999",
    "1E+999999",
    "0E+999999999999999999",
    "0E-99999999999",
    "-0E+29",
    "0E-28",
    "0E+28",
    "+1",
    "1.",
    ".5",
    " 1",
    "1 ",
    "1_000",
    "١٢",
    "NaN",
    "-Infinity",
    "sNaN",
    "",
    "-",
    "abc",
]
NUMBERS = ["1", "-1.5", "0.1", "1e400", "-0.0", "123456789012345678901234567890", "1.0000000000000000000000000001"]


def _verdict(model: type[BaseModel], document: str) -> Decimal | str:
    try:
        return model.model_validate_json(document).amount  # type: ignore[attr-defined, no-any-return]
    except ValidationError:
        return "refused"


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_string_amount_reads_as_counting_every_digit_reads_it(spelling: str) -> None:
    document = json.dumps({"amount": spelling})
    expected = _verdict(_CountedAmount, document)
    actual = _verdict(_Amount, document)
    assert actual == expected
    if isinstance(expected, Decimal):
        assert isinstance(actual, Decimal) and actual.as_tuple() == expected.as_tuple()


@pytest.mark.parametrize("number", NUMBERS)
def test_a_number_amount_reads_as_counting_every_digit_reads_it(number: str) -> None:
    document = '{"amount": ' + number + "}"
    assert _verdict(_Amount, document) == _verdict(_CountedAmount, document)


def test_the_plain_path_is_taken_and_the_counted_one_still_refuses() -> None:
    assert _verdict(_Amount, '{"amount": "12345678901234567890.123456"}') == Decimal("12345678901234567890.123456")
    assert _verdict(_Amount, '{"amount": "1' + "0" * 28 + '"}') == "refused"
    assert _verdict(_Amount, '{"amount": "1E-999999"}') == "refused"


@pytest.mark.parametrize("spelling", ["0E+999999999999999999", "0E-99999999999", "0E+29"])
def test_a_zero_with_an_exponent_no_database_holds_is_refused_where_it_enters(spelling: str) -> None:
    # Its digits (one) pass max_digits; PostgreSQL's numeric refuses it.
    assert _verdict(_ExactNumber, json.dumps({"amount": spelling})) == "refused"
    with pytest.raises(ValidationError, match="exponent"):
        _ExactNumber.model_validate({"amount": Decimal(spelling)})
    # An event that carries one, stored before the rule, is still read as it was.
    assert _verdict(_Amount, json.dumps({"amount": spelling})) == Decimal(spelling)


def test_python_values_and_serialization_are_unchanged() -> None:
    assert _Amount(amount=Decimal("1.50")).model_dump_json() == '{"amount":"1.50"}'
    assert _Amount.model_validate({"amount": "2.5"}).amount == Decimal("2.5")
    with pytest.raises(ValidationError, match="no more than 28 digits"):
        _Amount.model_validate({"amount": Decimal("1" + "0" * 28)})
    assert _Amount.model_json_schema() == _CountedAmount.model_json_schema() | {"title": "_Amount"}


@pytest.mark.parametrize(
    ("amount", "rounded"),
    [("50.025", "50.03"), ("-50.025", "-50.03"), ("0.005", "0.01"), ("50.0249", "50.02"), ("12.345", "12.35")],
)
def test_amounts_round_to_cents_as_bc_rounds_them(amount: str, rounded: str) -> None:
    """BC's Round() goes to the nearest cent, a half away from zero."""
    assert round_money(Decimal(amount)) == Decimal(rounded)
