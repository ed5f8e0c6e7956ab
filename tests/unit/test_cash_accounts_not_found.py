"""Which of the client card's cash accounts a company's cash figure left out (the pane says them)."""

from __future__ import annotations

from typing import Any

import pytest

from hub_gateway.company_details.queries import cash_accounts_not_found


def _cash(source: str, *numbers: str) -> dict[str, Any]:
    accounts = [{"number": number, "name": "Bank", "balance": "1.00"} for number in numbers]
    return {"cash": {"source": source, "accounts": accounts, "total": "0", "read_at": "2026-12-07T08:00:00Z"}}


@pytest.mark.parametrize(
    ("card", "figures", "missing"),
    [
        ({"cash_account_numbers": ["10110", "99999"]}, _cash("client_card", "10110"), ["99999"]),
        ({"cash_account_numbers": ["a100", "B200"]}, _cash("client_card", "A100", "b200"), []),  # any case
        ({"cash_account_numbers": ["10110"]}, _cash("client_card"), ["10110"]),  # none in this chart
        # Figures read by the hub's own rule (before the card named numbers): nothing to say yet.
        ({"cash_account_numbers": ["10110"]}, _cash("cues", "10100"), []),
        ({}, _cash("api", "10100"), []),
        ({"cash_account_numbers": ["10110"]}, None, []),
        ({"cash_account_numbers": ["10110"]}, {"cash": None}, []),
    ],
)
def test_the_card_numbers_the_cash_left_out(
    card: dict[str, Any], figures: dict[str, Any] | None, missing: list[str]
) -> None:
    assert cash_accounts_not_found(card, figures) == missing
