"""Cash: the balances of the cash accounts.

API v2.0 does not expose BC's "Cash Accounts" report definition, so a cash account is a
posting G/L account of category Assets whose subcategory is Cash (the demo chart's name).
A chart in another language names that subcategory otherwise, so a client card may name
the cash accounts instead; those are then exactly the cash, whatever their category.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from hub_common.events import CashAccountBalance, CashFigure
from hub_common.money import total
from hub_fetcher.bc.entities import Account

ACCOUNTS_FILTER = "category eq 'Assets' and accountType eq 'Posting'"


def is_cash_account(account: Account) -> bool:
    return (
        account.category == "Assets"
        and account.account_type == "Posting"
        and account.sub_category.strip().lower() == "cash"
    )


def cash_from_accounts(
    accounts: Iterable[Account], read_at: datetime, *, account_numbers: frozenset[str] | None = None
) -> CashFigure:
    def chosen(account: Account) -> bool:
        if account_numbers is not None:
            # A total account named by mistake would count its posting accounts' money twice.
            return account.number.upper() in account_numbers and account.account_type == "Posting"
        return is_cash_account(account)

    balances = [
        CashAccountBalance(number=a.number, name=a.display_name, balance=a.net_change)
        for a in sorted(accounts, key=lambda account: account.number)
        if chosen(a)
    ]
    return CashFigure(
        accounts=balances,
        total=total(balance.balance for balance in balances),
        source="api" if account_numbers is None else "client_card",
        read_at=read_at,
    )
