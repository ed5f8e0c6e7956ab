"""Admin API (``/_sandbox``) for what changes at run time: the sandbox clock, the books
(post documents and payments so that webhooks fire) and the webhook subscriptions.

- ``GET /_sandbox/clock``; ``PUT /_sandbox/clock`` with ``{"advance_seconds": N}``.
- ``POST /_sandbox/companies/{company_id}/sales-invoices``
  ``{"customer_number", "amount_including_tax", "due_date"}``: a posted sales invoice.
- ``POST /_sandbox/companies/{company_id}/sales-credit-memos``
  ``{"customer_number", "amount_including_tax"}``: a posted sales credit memo, refunded.
- ``POST /_sandbox/companies/{company_id}/customer-payments`` ``{"invoice", "amount"}``
  (invoice id or number): a customer payment applied to an open posted sales invoice.
- ``POST /_sandbox/companies/{company_id}/purchase-invoices``
  ``{"vendor_number", "amount_including_tax", "due_date"}``: a posted purchase invoice.
- ``POST /_sandbox/companies/{company_id}/bank-transfers`` ``{"count", "amount"}``: many
  G/L entries at once (two per transfer), for ``collection`` notices.
- ``DELETE /_sandbox/book-changes``: every book back to its seeded state.
- ``GET|DELETE /_sandbox/webhooks/subscriptions``: every app's live subscriptions / forget
  them all (with queued notices and the logs).
- ``GET /_sandbox/webhooks/deliveries``, ``GET /_sandbox/webhooks/handshakes``: logs.
- ``GET|PUT /_sandbox/tenants/{tenant}/environments/{environment}/other-subscriptions``
  ``{"count": N}``: subscriptions other apps hold there (they count toward the limit).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, Field

from hub_sandbox.book_changes import (
    BookChangeError,
    PostingResult,
    post_bank_transfers,
    post_purchase_invoice,
    post_sales_credit_memo,
    post_sales_invoice,
    register_customer_payment,
)
from hub_sandbox.documents import Document
from hub_sandbox.seed import CompanyBook
from hub_sandbox.state import SandboxState
from hub_sandbox.tenants import SandboxCompany, SandboxEnvironment, SandboxTenant
from hub_sandbox.webhooks import DeliveryAttempt, HandshakeAttempt, Subscription


class ClockView(BaseModel):
    now: dt.datetime
    offset_seconds: float


class ClockChange(BaseModel):
    advance_seconds: float = Field(ge=0)


class SalesInvoicePosting(BaseModel):
    customer_number: str
    amount_including_tax: Decimal = Field(gt=0)
    due_date: dt.date


class SalesCreditMemoPosting(BaseModel):
    customer_number: str
    amount_including_tax: Decimal = Field(gt=0)


class PurchaseInvoicePosting(BaseModel):
    vendor_number: str
    amount_including_tax: Decimal = Field(gt=0)
    due_date: dt.date


class CustomerPayment(BaseModel):
    invoice: str = Field(description="the sales invoice's id or number")
    amount: Decimal = Field(gt=0)


class BankTransfers(BaseModel):
    count: int = Field(ge=1, le=100_000)
    amount: Decimal = Field(default=Decimal("1.00"), gt=0)


class DocumentView(BaseModel):
    id: uuid.UUID
    number: str
    party_number: str
    amount_including_tax: Decimal
    remaining_amount: Decimal
    status: str
    due_date: dt.date


class ChangeView(BaseModel):
    entity_set: str
    record_id: uuid.UUID
    change_type: str


class PostingView(BaseModel):
    document: DocumentView | None
    changes: list[ChangeView]
    # (subscription, change) pairs now waiting to be notified.
    queued_notices: int


class SubscriptionView(BaseModel):
    subscription_id: str
    tenant_id: uuid.UUID
    environment: str
    app_id: str
    user_id: uuid.UUID
    notification_url: str
    resource: str
    client_state: str
    created_at: dt.datetime
    modified_at: dt.datetime
    expires_at: dt.datetime


class SubscriptionsView(BaseModel):
    subscriptions: list[SubscriptionView]
    # Subscriptions with changes waiting out the delay, and deliveries waiting to be sent.
    batches_waiting: int
    deliveries_waiting: int


class DeliveryView(BaseModel):
    delivery_id: int
    url: str
    at: dt.datetime
    status: int | None
    error: str | None
    body: dict[str, Any]
    outcome: str


class HandshakeView(BaseModel):
    url: str
    purpose: str
    at: dt.datetime
    status: int | None
    error: str | None
    ok: bool


class OtherSubscriptions(BaseModel):
    count: int = Field(ge=0)


def _document_view(document: Document) -> DocumentView:
    return DocumentView(
        id=document.id,
        number=document.number,
        party_number=document.party.number,
        amount_including_tax=document.amount_including_tax,
        remaining_amount=document.remaining_amount,
        status=document.status,
        due_date=document.due_date,
    )


def _subscription_view(s: Subscription) -> SubscriptionView:
    return SubscriptionView(
        subscription_id=s.id,
        tenant_id=s.tenant_id,
        environment=s.environment,
        app_id=s.app_id,
        user_id=s.user_id,
        notification_url=s.notification_url,
        resource=s.resource,
        client_state=s.client_state,
        created_at=s.created_at,
        modified_at=s.modified_at,
        expires_at=s.expires_at,
    )


def _delivery_view(a: DeliveryAttempt) -> DeliveryView:
    return DeliveryView(
        delivery_id=a.delivery_id, url=a.url, at=a.at, status=a.status, error=a.error, body=a.body, outcome=a.outcome
    )


def _handshake_view(a: HandshakeAttempt) -> HandshakeView:
    return HandshakeView(url=a.url, purpose=a.purpose, at=a.at, status=a.status, error=a.error, ok=a.ok)


def changes_router(state: SandboxState, prefix: str) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=["Sandbox admin"])

    def clock_view() -> ClockView:
        return ClockView(now=state.clock.now(), offset_seconds=state.clock.offset.total_seconds())

    @router.get("/clock")
    async def clock() -> ClockView:
        return clock_view()

    @router.put("/clock")
    async def advance_clock(change: ClockChange) -> ClockView:
        state.clock.advance(change.advance_seconds)
        return clock_view()

    def company(company_id: uuid.UUID) -> SandboxCompany:
        found = state.catalogue.find_company(company_id)
        if found is None:
            raise HTTPException(status_code=404, detail=f"No company '{company_id}' in the sandbox.")
        return found

    def post(company_id: uuid.UUID, operation: Callable[..., PostingResult], *arguments: object) -> PostingView:
        """Run a book operation on the company's current book, keep its changes and queue
        the webhook notices they cause."""
        found = company(company_id)
        book: CompanyBook = state.book(found)
        now = state.clock.now()
        try:
            result = operation(book, state.book_changes.of(found.id), *arguments, now)
        except BookChangeError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        state.book_changes.record(found.id, result.changes)
        queued = state.webhooks.record_changes(result.record_changes, now)
        return PostingView(
            document=_document_view(result.document) if result.document is not None else None,
            changes=[
                ChangeView(entity_set=c.entity_set, record_id=c.record_id, change_type=c.change_type.value)
                for c in result.record_changes
            ],
            queued_notices=queued,
        )

    @router.post("/companies/{company_id}/sales-invoices", status_code=201)
    async def sales_invoice(company_id: uuid.UUID, posting: SalesInvoicePosting) -> PostingView:
        return post(
            company_id, post_sales_invoice, posting.customer_number, posting.amount_including_tax, posting.due_date
        )

    @router.post("/companies/{company_id}/sales-credit-memos", status_code=201)
    async def sales_credit_memo(company_id: uuid.UUID, posting: SalesCreditMemoPosting) -> PostingView:
        return post(company_id, post_sales_credit_memo, posting.customer_number, posting.amount_including_tax)

    @router.post("/companies/{company_id}/customer-payments", status_code=201)
    async def customer_payment(company_id: uuid.UUID, payment: CustomerPayment) -> PostingView:
        return post(company_id, register_customer_payment, payment.invoice, payment.amount)

    @router.post("/companies/{company_id}/purchase-invoices", status_code=201)
    async def purchase_invoice(company_id: uuid.UUID, posting: PurchaseInvoicePosting) -> PostingView:
        return post(
            company_id, post_purchase_invoice, posting.vendor_number, posting.amount_including_tax, posting.due_date
        )

    @router.post("/companies/{company_id}/bank-transfers", status_code=201)
    async def bank_transfers(company_id: uuid.UUID, transfers: BankTransfers) -> PostingView:
        return post(company_id, post_bank_transfers, transfers.count, transfers.amount)

    @router.delete("/book-changes", status_code=204)
    async def clear_book_changes() -> Response:
        state.book_changes.clear()
        return Response(status_code=204)

    @router.get("/webhooks/subscriptions")
    async def subscriptions() -> SubscriptionsView:
        batches, deliveries = state.webhooks.pending()
        live = state.webhooks.store.live(state.clock.now())
        return SubscriptionsView(
            subscriptions=[_subscription_view(s) for s in sorted(live, key=lambda s: s.created_at)],
            batches_waiting=batches,
            deliveries_waiting=deliveries,
        )

    @router.delete("/webhooks/subscriptions", status_code=204)
    async def clear_subscriptions() -> Response:
        state.webhooks.clear()
        return Response(status_code=204)

    @router.get("/webhooks/deliveries")
    async def deliveries() -> list[DeliveryView]:
        return [_delivery_view(a) for a in state.webhooks.delivery_log]

    @router.get("/webhooks/handshakes")
    async def handshakes() -> list[HandshakeView]:
        return [_handshake_view(a) for a in state.webhooks.handshake_log]

    def environment(tenant: str, name: str) -> tuple[SandboxTenant, SandboxEnvironment]:
        found = state.catalogue.find(tenant)
        found_environment = found.environment(name) if found is not None else None
        if found is None or found_environment is None:
            raise HTTPException(status_code=404, detail=f"No environment '{name}' of tenant '{tenant}' in the sandbox.")
        return found, found_environment

    @router.get("/tenants/{tenant}/environments/{name}/other-subscriptions")
    async def other_subscriptions(tenant: str, name: str) -> OtherSubscriptions:
        found, found_environment = environment(tenant, name)
        return OtherSubscriptions(count=state.webhooks.store.other_apps(found.id, found_environment.name))

    @router.put("/tenants/{tenant}/environments/{name}/other-subscriptions")
    async def set_other_subscriptions(tenant: str, name: str, change: OtherSubscriptions) -> OtherSubscriptions:
        found, found_environment = environment(tenant, name)
        state.webhooks.store.set_other_apps(found.id, found_environment.name, change.count)
        return change

    return router
