"""Taxes due: what the company owes the tax authority, from its G/L balances.

No BC API exposes VAT entries or returns, so the figure is the balance of the
tax-payable liability accounts. The default rule picks posting accounts of category
Liabilities whose name or subcategory names a tax (tax, VAT, GST, sales tax, and the local
words MwSt, USt, TVA, IVA, BTW, mva, ALV, DPH, VSK; and, inside the compound words of German,
Dutch and the Nordic languages, Steuer, belasting, moms and merverdiavgift: Umsatzsteuer,
Vorsteuer, Salgsmoms, Omzetbelasting). A client can override the rule with an explicit list
of account numbers. Liabilities carry credit (negative) balances in BC, so the amount owed
is the negated sum: a positive number means money is due.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

from hub_common.events import CashAccountBalance, TaxesDue
from hub_common.money import ZERO, total
from hub_fetcher.bc.entities import Account

DEFAULT_RULE = (
    "Posting accounts of category Liabilities whose name or subcategory mentions a tax "
    "(tax, VAT, GST, MwSt, USt, TVA, IVA, BTW, mva, ALV, DPH, VSK, or Steuer, belasting, moms, "
    "merverdiavgift within a word); amount owed = minus their balance."
)
_TAX_WORDS = re.compile(
    r"\b(tax|taxes|vat|gst|hst|mwst|ust|tva|iva|btw|mva|alv|dph|vsk)\b"
    # German, Dutch and the Nordic languages write their taxes as compound words
    # ("Umsatzsteuer 19 %", "Salgsmoms", "Omzetbelasting", "Utgående merverdiavgift").
    r"|steuer|belasting|moms|merverdiavgift",
    re.IGNORECASE,
)
_NOT_OWED = re.compile(
    r"\b(receivable|deductible|prepaid|refund|deferred)\b"
    # A tax adviser's fees or invoices (Steuerberatung), deferred taxes (latente Steuern,
    # uitgestelde belastingen): liabilities, but no tax due to the authority.
    r"|steuerberat|latent|uitgestel",
    re.IGNORECASE,
)


def is_tax_payable(account: Account) -> bool:
    if account.category != "Liabilities" or account.account_type != "Posting":
        return False
    text = f"{account.display_name} {account.sub_category}"
    return bool(_TAX_WORDS.search(text)) and not _NOT_OWED.search(account.display_name)


# A rule's text travels in the snapshot's TaxesDue.rule (hub_common.events.Text).
RULE_MAX_LENGTH = 500


def _override_rule(account_numbers: frozenset[str]) -> str:
    """The card's accounts, as many as fit: a card may name 100 numbers of 20 characters,
    and a rule too long for the snapshot failed every refresh of the client."""
    listed = sorted(account_numbers)
    for shown in range(len(listed), 0, -1):
        more = len(listed) - shown
        names = ", ".join(listed[:shown]) + (f" and {more} more" if more else "")
        rule = f"Client override: accounts {names}; amount owed = minus their balance."
        if len(rule) <= RULE_MAX_LENGTH:
            return rule
    return f"Client override: {len(listed)} accounts; amount owed = minus their balance."


def taxes_due(
    accounts: Iterable[Account], *, read_at: datetime, account_numbers: frozenset[str] | None = None
) -> TaxesDue:
    if account_numbers is not None:
        chosen = [a for a in accounts if a.number.upper() in account_numbers]
        rule = _override_rule(account_numbers)
    else:
        chosen = [a for a in accounts if is_tax_payable(a)]
        rule = DEFAULT_RULE
    chosen.sort(key=lambda account: account.number)
    return TaxesDue(
        amount=ZERO - total(a.net_change for a in chosen),
        accounts=[CashAccountBalance(number=a.number, name=a.display_name, balance=a.net_change) for a in chosen],
        rule=rule,
        read_at=read_at,
    )
