"""What the fetcher makes of Business Central's answers: blank dates, exact amounts,
hostile bodies, Retry-After and $batch sub-responses.

The sandbox only answers as BC does, so the answers here are crafted: an
httpx.MockTransport plays BC for the fetcher's own HTTP client, byte for byte.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from hub_fetcher.bc.client import BusinessCentral, Environment
from hub_fetcher.bc.entities import PurchaseInvoice, SalesInvoice
from hub_fetcher.bc.identity import TokenProvider
from hub_fetcher.bc.limits import TenantLimiter
from hub_fetcher.figures.company import CompanyRecords, company_figures

BC_HOST = "https://bc.test"
ENVIRONMENT = Environment(tenant="contoso.com", name="Production")
ROOT = f"{BC_HOST}/v2.0/contoso.com/Production/api/v2.0"
TODAY = dt.date(2026, 11, 18)
READ_AT = dt.datetime(2026, 11, 18, 9, 30, tzinfo=dt.UTC)
BLANK_DATE = "0001-01-01"

# What BC answers to a request: (status, headers, body bytes).
Answering = Callable[[httpx.Request], tuple[int, dict[str, str], bytes]]


class FixedToken(TokenProvider):
    """The identity is not under test here: a fixed bearer token instead of Entra."""

    def __init__(self) -> None:
        pass

    async def token_for(self, tenant: str) -> str:
        return "token"


class CraftedBusinessCentral:
    """Plays BC: each request is answered by ``answering``, set by the test."""

    def __init__(self) -> None:
        self.answering: Answering = lambda request: (200, {}, b'{"value": []}')

    def handle(self, request: httpx.Request) -> httpx.Response:
        status, headers, body = self.answering(request)
        return httpx.Response(status, headers={"content-type": "application/json", **headers}, content=body)


@pytest.fixture
def crafted() -> CraftedBusinessCentral:
    return CraftedBusinessCentral()


@pytest.fixture
async def bc(crafted: CraftedBusinessCentral) -> AsyncIterator[BusinessCentral]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(crafted.handle)) as http:
        yield BusinessCentral(
            api_base=BC_HOST,
            http=http,
            tokens=FixedToken(),
            limiter=TenantLimiter(),
            max_response_bytes=10_000_000,
            request_deadline_seconds=5,
        )


def always(status: int, body: bytes, headers: dict[str, str] | None = None) -> Answering:
    return lambda request: (status, headers or {}, body)


def batch_answer(*responses: dict[str, Any]) -> Answering:
    """A $batch answer; its sub-responses are written as given (raw JSON text in bodies kept)."""
    return always(200, json.dumps({"responses": list(responses)}).encode())


def batch_answer_text(text: str) -> Answering:
    return always(200, text.encode())


# ---------------------------------------------------------------- 1. blank dates


def test_a_blank_date_is_no_date() -> None:
    sale = SalesInvoice.model_validate(
        {"number": "S1", "status": "Open", "dueDate": BLANK_DATE, "postingDate": BLANK_DATE}
    )
    purchase = PurchaseInvoice.model_validate({"number": "P1", "status": "Open", "dueDate": BLANK_DATE})
    assert (sale.due_date, sale.posting_date, purchase.due_date) == (None, None, None)


def test_a_real_date_is_kept() -> None:
    sale = SalesInvoice.model_validate({"number": "S1", "status": "Open", "dueDate": "2026-11-17"})
    assert sale.due_date == dt.date(2026, 11, 17)


def test_an_invoice_with_a_blank_due_date_is_never_due() -> None:
    records = CompanyRecords.parse(
        {
            "setup": [{"localCurrencyCode": "EUR"}],
            "accounts": [],
            "open_sales_invoices": [{"number": "S1", "status": "Open", "dueDate": BLANK_DATE, "remainingAmount": 100}],
            "open_purchase_invoices": [
                {"number": "P1", "status": "Open", "dueDate": BLANK_DATE, "totalAmountIncludingTax": 40}
            ],
            "unposted_sales_invoices": [],
            "sales_this_month": [
                {"number": "S2", "status": "Open", "postingDate": BLANK_DATE, "totalAmountExcludingTax": 7}
            ],
            "sales_orders": [],
            "sales_quotes": [],
        }
    )
    figures = company_figures(records, today=TODAY, read_at=READ_AT, document_link=lambda page, number: "")
    assert figures.overdue_sales_invoices is not None and figures.overdue_purchase_invoices is not None
    assert (figures.overdue_sales_invoices.count, figures.overdue_sales_invoices.total) == (0, Decimal(0))
    assert figures.overdue_sales_invoices.largest == []
    assert (figures.overdue_purchase_invoices.count, figures.overdue_purchase_invoices.total) == (0, Decimal(0))
    assert figures.purchase_invoices_due_next_week is not None
    assert figures.purchase_invoices_due_next_week.count == 0
    assert figures.sales_this_month is not None and figures.sales_this_month.amount == Decimal(0)
    assert figures.cash_flow_forecast is not None
    first_week = figures.cash_flow_forecast.weeks[0]
    assert (first_week.receipts, first_week.payments) == (Decimal(0), Decimal(0))
