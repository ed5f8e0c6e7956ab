"""A client card's G/L account numbers refused in words an accountant reads, in their language:
the card's type says which entry is wrong and what is allowed, and the gateway's 422 keeps
FastAPI's shape with that sentence as the message (no pydantic pattern, no "Value error, ")."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient
from pydantic import ValidationError

from hub_common.events import ClientCard
from hub_common.i18n import InvalidValue
from hub_gateway.languages import localized_validation_exception_handler

CARD = {"name": "Adatum", "client_url": "https://businesscentral.dynamics.com/adatum.com/Production"}


def _plainly_refused(number: str) -> str:
    return f"Account numbers are letters, digits, '.', '_' and '-', up to 20 characters: \"{number}\" is not one."


@pytest.fixture(scope="module")
def gateway() -> TestClient:
    """A route taking a client card, answered by the gateway's own 422 handler."""
    app = FastAPI()
    app.add_exception_handler(RequestValidationError, localized_validation_exception_handler)

    @app.put("/cards")
    async def save(card: ClientCard) -> dict[str, str]:
        return {"name": card.name}

    return TestClient(app)


@pytest.mark.parametrize(
    ("numbers", "wrong"),
    [(["10110 x"], "10110 x"), (["10110", ""], ""), (["x" * 21], "x" * 21), (["2510/1"], "2510/1")],
)
def test_a_bad_account_number_is_named_with_what_is_allowed(numbers: list[str], wrong: str) -> None:
    with pytest.raises(ValidationError) as refused:
        ClientCard(**CARD, cash_account_numbers=numbers)
    (problem,) = refused.value.errors()
    assert problem["loc"] == ("cash_account_numbers", numbers.index(wrong))
    reason = problem["ctx"]["error"]
    assert isinstance(reason, InvalidValue)
    assert str(reason) == _plainly_refused(wrong)


def test_a_long_entry_is_quoted_shortened() -> None:
    with pytest.raises(ValidationError) as refused:
        ClientCard(**CARD, tax_account_numbers=["9" * 500])
    assert str(refused.value.errors()[0]["ctx"]["error"]) == _plainly_refused("9" * 39 + "…")


def test_good_account_numbers_pass_and_the_schema_still_states_the_rule() -> None:
    card = ClientCard(**CARD, tax_account_numbers=["2510", "56.10"], cash_account_numbers=["A-1_b"])
    assert (card.tax_account_numbers, card.cash_account_numbers) == (["2510", "56.10"], ["A-1_b"])
    numbers = ClientCard.model_json_schema()["properties"]["cash_account_numbers"]["anyOf"][0]
    assert numbers["maxItems"] == 100
    assert numbers["items"] == {"type": "string", "minLength": 1, "maxLength": 20, "pattern": "^[A-Za-z0-9._-]+$"}


def test_the_422_names_the_entry_plainly_in_the_callers_language(gateway: TestClient) -> None:
    bad = {**CARD, "tax_account_numbers": ["a b"], "cash_account_numbers": ["10110", "10 130"]}
    english = gateway.put("/cards", json=bad)
    assert english.status_code == 422
    problems: list[dict[str, Any]] = english.json()["detail"]
    assert [(p["type"], p["loc"], p["msg"], p["input"]) for p in problems] == [
        ("value_error", ["body", "tax_account_numbers", 0], _plainly_refused("a b"), "a b"),
        ("value_error", ["body", "cash_account_numbers", 1], _plainly_refused("10 130"), "10 130"),
    ]
    german = gateway.put("/cards", json=bad, headers={"Accept-Language": "de"})
    assert german.headers["Content-Language"] == "de"
    assert german.json()["detail"][1]["msg"] == (
        "Kontonummern bestehen aus Buchstaben, Ziffern, '.', '_' und '-', höchstens 20 Zeichen: „10 130“ ist keine."
    )
    too_many = gateway.put("/cards", json={**CARD, "cash_account_numbers": ["1"] * 101})
    assert too_many.json()["detail"][0]["msg"] == "Up to 100 account numbers can be named here, not 101."


def test_other_reasons_keep_their_value_error_form(gateway: TestClient) -> None:
    answer = gateway.put("/cards", json={**CARD, "contact_name": "two\nlines"}, headers={"Accept-Language": "de"})
    assert answer.json()["detail"][0]["msg"].startswith("Ungültiger Wert, ")


def test_a_quoted_entry_json_cannot_carry_is_shown_escaped(gateway: TestClient) -> None:
    body = '{"name": "Adatum", "client_url": "https://x.example/a/b", "cash_account_numbers": ["a\\ud800b"]}'
    answer = gateway.put("/cards", content=body.encode(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["msg"] == _plainly_refused("a\\ud800b")
