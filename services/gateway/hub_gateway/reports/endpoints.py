"""Excel workbooks over the JSON API: a company's statements, and the firm's key figures.

The company workbook is read live from BC by a fetcher (``cmd.fetcher.statements.read``);
the gateway names the client's tenant and environment from its read model of the
principal's firm, so another firm's company is a 404 and nothing in the request chooses
where BC is called. The key-figures workbook comes from the read model alone.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from pydantic import BaseModel

from hub_common import commands
from hub_common.commands import CommandRejected, RejectionReason
from hub_common.events import Actor, ActorKind, ClientConnection, Failure
from hub_common.i18n import N_, translator
from hub_common.statements import CompanyStatements
from hub_common.time_zones import client_today
from hub_gateway.accounts import preferences
from hub_gateway.clients import queries as clients_queries
from hub_gateway.dashboard import queries as dashboard_queries
from hub_gateway.dependencies import (
    SIGNED_IN_ERRORS,
    CurrentPrincipal,
    Session,
    State,
    error_responses,
    rejection_error,
)
from hub_gateway.languages import LocalizedHTTPException, request_language
from hub_gateway.reports import (
    XLSX_MEDIA_TYPE,
    attachment_disposition,
    company_workbook,
    key_figures_rows,
    key_figures_workbook,
)
from hub_gateway.reports.capacity import FirmBusy

reports = APIRouter(prefix="/api/v1", tags=["reports"], responses=error_responses(*SIGNED_IN_ERRORS, 404))

# The oldest statements date a workbook is asked for; BC itself goes back further, but a
# date before this is a typing mistake far more often than a wish.
EARLIEST_AS_OF = date(1990, 1, 1)
# How long a client is told to wait before trying again after a transient failure.
RETRY_AFTER_SECONDS = 30
# How long before a firm with every workbook place taken tries again (a read takes seconds).
BUSY_RETRY_AFTER_SECONDS = 10


class XlsxResponse(Response):
    media_type = XLSX_MEDIA_TYPE


class ReportErrorDetail(BaseModel):
    message: str
    field: str | None = None
    # What Business Central answered, classified: summary, fix and technical details.
    failure: Failure | None = None


class ReportError(BaseModel):
    detail: ReportErrorDetail


def _xlsx(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    }


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "model": ReportError}


def _download(content: bytes, name: str, day: date) -> XlsxResponse:
    return XlsxResponse(
        content,
        headers={
            "Content-Disposition": attachment_disposition(name, day),
            # Figures of a client are not for shared caches, nor for the browser's.
            "Cache-Control": "no-store",
        },
    )


def _fetch_error(rejected: CommandRejected) -> HTTPException:
    """The answer when the statements could not be read: what BC said (502), or that
    trying again shortly may work (503, with Retry-After)."""
    rejection = rejected.rejection
    detail = ReportErrorDetail(message=rejection.message, field=rejection.field, failure=rejection.failure)
    if rejection.reason is RejectionReason.UNAVAILABLE:
        return HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=detail.model_dump(mode="json"),
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if rejection.reason is RejectionReason.FORBIDDEN:
        # The client's tenant has not granted the firm access (or took it back).
        return HTTPException(status.HTTP_403_FORBIDDEN, detail=detail.model_dump(mode="json"))
    if rejection.failure is not None:
        return HTTPException(status.HTTP_502_BAD_GATEWAY, detail=detail.model_dump(mode="json"))
    return rejection_error(rejected)


@reports.get(
    "/clients/{client_id}/companies/{company_id}/workbook",
    response_class=XlsxResponse,
    responses={
        200: _xlsx(
            "The company's workbook: balance sheet, income statement, cash flow statement, retained "
            "earnings, trial balance, aged receivables and aged payables, one sheet each, set up to print."
        ),
        403: _error("The client's tenant has not given your firm access (waiting for the client's permission)"),
        404: {"description": "No such client or company in your firm"},
        422: {"description": "The date is not one statements can be read for"},
        429: {"description": "Your firm already has as many workbooks on their way as it may; try after Retry-After"},
        502: _error("Business Central refused or failed the read; `failure` says what and how to fix it"),
        503: _error("No fetcher answered in time, or BC is busy or offline; try again after Retry-After"),
    },
)
async def company_workbook_download(
    client_id: uuid.UUID,
    company_id: uuid.UUID,
    principal: CurrentPrincipal,
    state: State,
    session: Session,
    request: Request,
    as_of: Annotated[
        date | None,
        Query(
            description="The statements' date (YYYY-MM-DD); the period statements run from the start "
            "of the company's fiscal year to it. Default: today where the client is (its card's time zone; "
            "UTC when it names none)."
        ),
    ] = None,
) -> XlsxResponse:
    """The company's financial statements from Business Central, as an Excel workbook."""
    # Before the client's today is known (its card's time zone): outside any zone's today.
    if as_of is not None and not EARLIEST_AS_OF <= as_of <= datetime.now(UTC).date() + timedelta(days=1):
        raise _as_of_refused()
    client = await clients_queries.client_in_firm(session, firm_id=principal.firm_id, client_id=client_id)
    company = (
        await clients_queries.company_in_firm(
            session, firm_id=principal.firm_id, client_id=client_id, company_id=company_id
        )
        if client is not None
        else None
    )
    if client is None or company is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=N_("No such company"))
    client_name, tenant, tenant_id, environment = client.name, client.tenant, client.tenant_id, client.environment
    today_at_client = client_today(clients_queries.card_time_zone(client), datetime.now(UTC))
    if as_of is not None and as_of > today_at_client:
        raise _as_of_refused()  # the client's tomorrow: BC would print figures of a day not begun
    day = as_of or today_at_client
    # The name the dashboard shows, so the file is found under the name the accountant knows.
    company_name = dashboard_queries.shown_company_name(company)
    known_currency = company.currency_code
    # BC may take a while; the read model's connection is not needed meanwhile.
    await session.close()
    command = commands.ReadStatements(
        firm_id=principal.firm_id,
        actor=Actor(kind=ActorKind.ACCOUNTANT, id=str(principal.accountant_id), display_name=principal.email),
        correlation_id=request.state.correlation_id,
        # The fetcher reads only a tenant that granted this firm access, by its id.
        connection=ClientConnection(tenant=tenant, environment=environment, tenant_id=tenant_id),
        company_id=company_id,
        as_of=day,
    )
    try:
        async with state.workbooks.for_firm(principal.firm_id):
            try:
                statements = await commands.send_command(
                    state.nats,
                    commands.READ_STATEMENTS,
                    command,
                    CompanyStatements,
                    timeout=state.settings.report_timeout_seconds,
                )
            except CommandRejected as rejected:
                raise _fetch_error(rejected) from rejected
            # Building a workbook is CPU work; the event loop keeps serving meanwhile.
            async with state.workbooks.building():
                content = await asyncio.to_thread(
                    company_workbook,
                    statements,
                    client_name=client_name,
                    company_name=company_name,
                    currency_code=statements.currency_code or known_currency,
                    as_of=day,
                    today_at_client=today_at_client,
                    language=request_language(request),
                )
    except FirmBusy as busy:
        raise LocalizedHTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            N_("Your firm already has %(count)s workbooks on their way; try again when one of them is done"),
            values={"count": busy.limit},
            headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
            as_object=True,
        ) from None
    return _download(content, company_name, day)


def _as_of_refused() -> LocalizedHTTPException:
    return LocalizedHTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        N_("as_of must be between %(earliest)s and today"),
        field="as_of",
        values={"earliest": EARLIEST_AS_OF.isoformat()},
    )


@reports.get(
    "/key-figures/workbook",
    response_class=XlsxResponse,
    responses={
        200: _xlsx(
            "The key figures of every company of every client of your firm, one row each, with an "
            "autofilter, a total per currency and, with a reporting currency in your preferences, a total "
            "in it, set up to print."
        )
    },
)
async def key_figures_download(principal: CurrentPrincipal, session: Session, request: Request) -> XlsxResponse:
    """The dashboard's figures as an Excel workbook, in the accountant's language."""
    chosen = await preferences.preferences_of(session, principal)
    rows = await dashboard_queries.dashboard_rows(
        session, firm_id=principal.firm_id, reporting_currency=chosen.reporting_currency
    )
    exported_at = datetime.now(UTC)
    language = request_language(request)
    content = await asyncio.to_thread(
        key_figures_workbook,
        key_figures_rows(rows),
        exported_at=exported_at,
        language=language,
        reporting_currency=chosen.reporting_currency,
    )
    return _download(content, translator(language).gettext("Key figures"), exported_at.date())
