"""The shapes the hub reads from BC, validated field by field (tenant answers are input).

Only the fields the hub uses are declared; the rest of each entity is ignored.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hub_common.events import FailureKind
from hub_fetcher.bc.failures import FetchFailure


class Entity(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Company(Entity):
    id: uuid.UUID
    name: str = Field(min_length=1, max_length=250)
    display_name: str | None = Field(default=None, alias="displayName", max_length=250)


class Account(Entity):
    number: str = Field(max_length=50)
    display_name: str = Field(default="", alias="displayName", max_length=500)
    category: str = Field(default="", max_length=100)
    sub_category: str = Field(default="", alias="subCategory", max_length=500)
    account_type: str = Field(default="", alias="accountType", max_length=50)
    net_change: Decimal = Field(alias="netChange", allow_inf_nan=False)


class SalesInvoice(Entity):
    number: str = Field(max_length=50)
    customer_name: str = Field(default="", alias="customerName", max_length=250)
    status: str = Field(max_length=50)
    due_date: dt.date | None = Field(default=None, alias="dueDate")
    posting_date: dt.date | None = Field(default=None, alias="postingDate")
    remaining_amount: Decimal = Field(default=Decimal(0), alias="remainingAmount", allow_inf_nan=False)
    total_excluding_tax: Decimal = Field(default=Decimal(0), alias="totalAmountExcludingTax", allow_inf_nan=False)
    total_including_tax: Decimal = Field(default=Decimal(0), alias="totalAmountIncludingTax", allow_inf_nan=False)


class PurchaseInvoice(Entity):
    number: str = Field(max_length=50)
    vendor_name: str = Field(default="", alias="vendorName", max_length=250)
    status: str = Field(max_length=50)
    due_date: dt.date | None = Field(default=None, alias="dueDate")
    total_including_tax: Decimal = Field(default=Decimal(0), alias="totalAmountIncludingTax", allow_inf_nan=False)


class SalesDocumentEntity(Entity):
    """A sales order or quote: only its status and total matter here."""

    status: str = Field(default="", max_length=50)
    total_including_tax: Decimal = Field(default=Decimal(0), alias="totalAmountIncludingTax", allow_inf_nan=False)


class ActivityCues(Entity):
    """AccountantPortalActivityCues (page 1314): only its exact decimal fields are used."""

    overdue_purchase_invoice_amount: Decimal = Field(alias="OverduePurchInvoiceAmountDecimal", allow_inf_nan=False)
    overdue_sales_invoice_amount: Decimal = Field(alias="OverdueSalesInvoiceAmountDecimal", allow_inf_nan=False)


class FinanceCues(Entity):
    """AccountantPortalFinanceCues (page 1315): the balance of BC's own Cash Accounts."""

    cash_accounts_balance: Decimal = Field(alias="CashAccountsBalanceAmountDecimal", allow_inf_nan=False)


class GeneralLedgerSetup(Entity):
    local_currency_code: str = Field(default="", alias="localCurrencyCode", max_length=10)


EntityT = TypeVar("EntityT", bound=Entity)


def parse_entities(model: type[EntityT], items: list[dict[str, Any]], what: str) -> list[EntityT]:
    try:
        return [model.model_validate(item) for item in items]
    except ValidationError as error:
        raise FetchFailure(
            FailureKind.BAD_RESPONSE,
            message=f"{what}: unexpected shape ({error.error_count()} errors: {error.errors()[0]['msg']})",
        ) from error
