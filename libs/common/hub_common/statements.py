"""A company's financial statements as Business Central's statement APIs give them.

The reply to ``cmd.fetcher.statements.read`` (see ``commands.ReadStatements``): balance
sheet, income statement, cash flow statement, retained earnings, trial balance and aged
receivables and payables, each with its lines in BC's order. Money is Decimal (a JSON
string on the wire); every amount is in the company's local currency (``currency_code``).

The models bound every list and text, so a reply can never grow without limit whatever a
tenant answers.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from hub_common.money import Money

# More lines than any real chart of accounts or customer list a workbook is printed from;
# the fetcher refuses a longer statement as a bad response.
MAX_STATEMENT_LINES = 20_000
# Deeper indentation than this prints off the page; BC's reports rarely go past 4.
MAX_INDENTATION = 10

LineText = Annotated[str, Field(max_length=500)]
# BC's lineType of a financial report row; anything else a tenant sends is read as detail.
LineType = Literal["header", "detail", "total", "spacer"]
# The G/L account types of a trial balance row, as BC names them once decoded (_x002D_ is "-").
AccountType = Annotated[str, Field(max_length=30)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StatementLine(_Frozen):
    """One row of a financial report (balanceSheets, incomeStatements, ...)."""

    line_number: Annotated[int, Field(ge=0)]
    description: LineText
    amount: Money
    line_type: LineType
    indentation: Annotated[int, Field(ge=0, le=MAX_INDENTATION)]


class Statement(_Frozen):
    """A statement at a date (``period_start`` None: the balance sheet) or over a period."""

    period_start: date | None
    period_end: date
    lines: Annotated[list[StatementLine], Field(max_length=MAX_STATEMENT_LINES)]
    # BC's words where it could not compute this statement (its financial report in General
    # Ledger Setup blank, deleted or broken; no permission on it): no lines then, and the
    # rest of the workbook stands. Left out while None, so a gateway not yet upgraded reads it.
    unavailable: Annotated[str, Field(max_length=2000)] | None = Field(
        default=None, exclude_if=lambda unavailable: unavailable is None
    )


class TrialBalanceLine(_Frozen):
    """One G/L account. Heading rows have no amounts; Total rows sum the rows above them."""

    number: Annotated[str, Field(max_length=20)]
    name: LineText
    account_type: AccountType
    # BC's totalDebit and totalCredit: the period's debits and its credits, each in full (a
    # bank account paid into 10,000 and out 9,000 has 10,000 and 9,000, not a net 1,000).
    # The names are the fetcher's and the gateway's contract, kept across a rolling upgrade.
    net_change_debit: Money | None
    net_change_credit: Money | None
    balance_debit: Money | None
    balance_credit: Money | None

    @property
    def is_posting(self) -> bool:
        return self.account_type.casefold() == "posting"


class TrialBalance(_Frozen):
    """Net change over ``period_start``..``period_end`` and the balance at ``period_end``."""

    period_start: date
    period_end: date
    lines: Annotated[list[TrialBalanceLine], Field(max_length=MAX_STATEMENT_LINES)]


class AgedLine(_Frozen):
    """One customer or vendor: what is not yet due, and what is overdue by period."""

    number: Annotated[str, Field(max_length=20)]
    name: LineText
    # The customer's or vendor's own currency (empty: local); the amounts are local currency.
    currency_code: Annotated[str, Field(max_length=10)]
    current: Money
    period1: Money
    period2: Money
    period3: Money
    balance_due: Money


class AgedReport(_Frozen):
    """BC's aged receivables or payables as of a date, in periods of ``period_days``.

    ``period1`` is 1..period_days overdue, ``period2`` the next period_days, ``period3``
    everything older. BC's own "Total" row is left out: the workbook adds its grand total.
    """

    as_of: date
    period_days: Annotated[int, Field(ge=1, le=366)]
    lines: Annotated[list[AgedLine], Field(max_length=MAX_STATEMENT_LINES)]


class CompanyStatements(_Frozen):
    """Every statement of one company, read from BC at ``read_at``."""

    company_id: uuid.UUID
    currency_code: Annotated[str, Field(max_length=10)]
    as_of: date
    # The fiscal year the period statements cover (from it to ``as_of``).
    fiscal_year_start: date
    read_at: datetime
    balance_sheet: Statement
    income_statement: Statement
    cash_flow_statement: Statement
    retained_earnings: Statement
    trial_balance: TrialBalance
    aged_receivables: AgedReport
    aged_payables: AgedReport
