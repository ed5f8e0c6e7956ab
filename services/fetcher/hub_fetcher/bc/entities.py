"""The shapes the hub reads from BC, validated field by field (tenant answers are input).

Only the fields the hub uses are declared; the rest of each entity is ignored.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from hub_common.events import BC_CURRENCY_CODE_PATTERN, FailureKind
from hub_common.money import ExactNumber
from hub_fetcher.bc.failures import FetchFailure


class Entity(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


def _blank_date_as_none(day: dt.date | None) -> dt.date | None:
    """BC writes an empty date (AL's 0D) as "0001-01-01": no date, not one 2,000 years
    ago, which would make an invoice without a due date 739,000 days overdue."""
    return None if day is not None and day.year == 1 else day


# A BC date field: None when BC left it blank.
BcDate = Annotated[dt.date | None, AfterValidator(_blank_date_as_none)]


def _null_text_as_empty(value: object) -> object:
    """BC writes null for an empty text now and then (as the statements show): an empty
    text, not a malformed answer that would fail the company."""
    return "" if value is None else value


# An optional BC text field: empty when BC left it blank or wrote null.
BcText = Annotated[str, BeforeValidator(_null_text_as_empty)]

# A money amount of BC. AL's Decimal fields hold at most +/-999,999,999,999,999.99 (15
# digits before the point, by the AL "Decimal data type" docs); FlowFields such as
# netChange and the cue decimals are sums of them, computed in .NET decimal, so they can go
# further. 20 digits before the point leaves room for a sum of 100,000 fields at their
# maximum, and keeps every amount a Money (28 digits), round_money (which quantizes to the
# cent within 28 digits) and the sums of a company's documents can take: anything larger
# is refused here as a bad answer, not met later as an error building the snapshot.
MAX_AMOUNT_DIGITS_BEFORE_POINT = 20
Amount = Annotated[ExactNumber, Field(gt=-(10**MAX_AMOUNT_DIGITS_BEFORE_POINT), lt=10**MAX_AMOUNT_DIGITS_BEFORE_POINT)]


def _null_amount_as_zero(value: object) -> object:
    return Decimal(0) if value is None else value


class Company(Entity):
    id: uuid.UUID
    name: str = Field(min_length=1, max_length=250)
    display_name: str | None = Field(default=None, alias="displayName", max_length=250)


class Account(Entity):
    number: str = Field(max_length=50)
    display_name: BcText = Field(default="", alias="displayName", max_length=500)
    category: BcText = Field(default="", max_length=100)
    sub_category: BcText = Field(default="", alias="subCategory", max_length=500)
    account_type: BcText = Field(default="", alias="accountType", max_length=50)
    net_change: Amount = Field(alias="netChange")


# The amounts and due dates below are in every read's $select, so BC always answers them:
# one missing is a bad answer, not an invoice of 0 or one never due.


class SalesInvoice(Entity):
    number: str = Field(max_length=50)
    sell_to_name: BcText = Field(default="", alias="customerName", max_length=250)
    bill_to_name: BcText = Field(default="", alias="billToName", max_length=250)
    status: str = Field(max_length=50)
    due_date: BcDate = Field(alias="dueDate")
    remaining_amount: Amount = Field(alias="remainingAmount")
    # The document's currency, in which its amounts are; empty: the company's own (LCY).
    currency_code: BcText = Field(default="", alias="currencyCode", max_length=10)

    @property
    def customer_name(self) -> str:
        """Who owes it: the bill-to customer (a head office paying for its branch), whose
        ledger BC posts the invoice to; the sell-to one if BC wrote none."""
        return self.bill_to_name or self.sell_to_name


class CustomerSale(Entity):
    """A row of the customerSales query (30000): one customer's "Sales (LCY)" of its ledger's
    invoices and credit memos within the request's dateFilter."""

    customer_number: BcText = Field(default="", alias="customerNumber", max_length=50)
    # A customer the query's outer join found no entries for: no sales, whether BC writes
    # 0 or null.
    total_sales_amount: Annotated[Amount, BeforeValidator(_null_amount_as_zero)] = Field(
        default=Decimal(0), alias="totalSalesAmount"
    )


class PurchaseInvoice(Entity):
    number: str = Field(max_length=50)
    buy_from_name: BcText = Field(default="", alias="vendorName", max_length=250)
    pay_to_name: BcText = Field(default="", alias="payToName", max_length=250)
    status: str = Field(max_length=50)
    due_date: BcDate = Field(alias="dueDate")
    total_including_tax: Amount = Field(alias="totalAmountIncludingTax")
    currency_code: BcText = Field(default="", alias="currencyCode", max_length=10)

    @property
    def vendor_name(self) -> str:
        """Who is to be paid: the pay-to vendor, whose ledger BC posts the invoice to; the
        buy-from one if BC wrote none."""
        return self.pay_to_name or self.buy_from_name


class SalesDocumentEntity(Entity):
    """A sales order, quote or unposted invoice: only its status, total and currency matter
    here."""

    status: BcText = Field(default="", max_length=50)
    total_including_tax: Amount = Field(alias="totalAmountIncludingTax")
    currency_code: BcText = Field(default="", alias="currencyCode", max_length=10)


class ActivityCues(Entity):
    """AccountantPortalActivityCues (page 1314): only its exact decimal fields are used."""

    overdue_purchase_invoice_amount: Amount = Field(alias="OverduePurchInvoiceAmountDecimal")
    overdue_sales_invoice_amount: Amount = Field(alias="OverdueSalesInvoiceAmountDecimal")


class FinanceCues(Entity):
    """AccountantPortalFinanceCues (page 1315): the balance of BC's own Cash Accounts."""

    cash_accounts_balance: Amount = Field(alias="CashAccountsBalanceAmountDecimal")


class GeneralLedgerSetup(Entity):
    local_currency_code: BcText = Field(default="", alias="localCurrencyCode", max_length=10)


# BC keeps rate amounts with up to 6 decimals; anything beyond a trillion is not a rate.
RateAmount = Annotated[Decimal, Field(allow_inf_nan=False, ge=-(10**12), le=10**12)]


class CurrencyExchangeRate(Entity):
    """currencyExchangeRates (table 330): ``exchangeRateAmount`` units of the currency equal
    ``relationalExchangeRateAmount`` units of the relational currency (empty: the local
    currency) from ``startingDate`` on."""

    # BC's Code fields are upper case; the pattern keeps anything else out of events.
    currency_code: str = Field(min_length=1, max_length=10, pattern=BC_CURRENCY_CODE_PATTERN, alias="currencyCode")
    # Kept as a date even when blank (0001-01-01): a rate without a starting date is in
    # effect from the beginning, which date(1, 1, 1) says exactly, and the snapshot's
    # ExchangeRate needs a date.
    starting_date: dt.date = Field(alias="startingDate")
    exchange_rate_amount: RateAmount = Field(alias="exchangeRateAmount")
    relational_currency_code: str = Field(
        default="", max_length=10, pattern=r"^[^a-z\x00-\x1f\x7f]*$", alias="relationalCurrencyCode"
    )
    relational_exchange_rate_amount: RateAmount = Field(alias="relationalExchangeRateAmount")


EntityT = TypeVar("EntityT", bound=Entity)


def parse_entities(
    model: type[EntityT], items: list[dict[str, Any]], what: str, *, context: dict[str, Any] | None = None
) -> list[EntityT]:
    """``context`` is what the whole answer says about each item (its validators read it)."""
    try:
        return [model.model_validate(item, context=context) for item in items]
    except ValidationError as error:
        first = error.errors()[0]
        # The field named (never its value: tenant input stays out of messages and logs).
        field = ".".join(str(part) for part in first["loc"])
        raise FetchFailure(
            FailureKind.BAD_RESPONSE,
            message=f"{what}: unexpected shape ({error.error_count()} errors: {field}: {first['msg']})",
        ) from error
