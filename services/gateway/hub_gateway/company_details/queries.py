"""The Company Details pane: one company's figures, cash accounts, forecast and overdue invoices."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from hub_common.time_zones import client_today
from hub_gateway.clients.queries import (
    CompanyNotifications,
    card_time_zone,
    client_in_firm,
    company_in_firm,
    company_notifications,
    parsed_json,
)
from hub_gateway.readmodel.models import CompanyRateRow


class ExchangeRateView(BaseModel):
    """A rate the company's BC holds, in effect on the day of its figures."""

    currency_code: str
    # Local currency per unit of the currency, as a decimal string; None: BC's rate is zero
    # or negative.
    lcy_per_unit: str | None
    starting_date: date


class CompanyDetails(BaseModel):
    client_id: uuid.UUID
    client_name: str
    client_url: str
    company_id: uuid.UUID
    company_name: str
    display_name: str | None
    state: str
    as_of: datetime | None
    currency_code: str | None
    web_client_link: str | None
    figures: dict[str, Any] | None
    failure: dict[str, Any] | None
    next_attempt_at: datetime | None
    # The rates a reporting currency converts this company's amounts with; why there are none
    # when BC did not give them (both empty for figures read before the hub read rates).
    exchange_rates: list[ExchangeRateView] = []
    exchange_rates_unavailable: str | None = None
    # Whether Business Central notifies the hub of this company's changes.
    change_notifications: CompanyNotifications | None = None
    # Today where the client is (its card's time zone; UTC without one): the workbook's
    # default date and the latest it can be asked for.
    client_today: date
    # The cash accounts the client card names that the figures' cash (read from the card)
    # does not list: no posting account of that number in this company's chart (a typo, or
    # a number of another company of the client, each of which keeps its own chart).
    cash_accounts_not_found: list[str] = []


def cash_accounts_not_found(card: dict[str, Any], figures: dict[str, Any] | None) -> list[str]:
    """The card's cash account numbers missing from cash figures made from the card."""
    cash = (figures or {}).get("cash")
    named = card.get("cash_account_numbers")
    if not isinstance(cash, dict) or cash.get("source") != "client_card" or not isinstance(named, list):
        return []
    listed = {str(account.get("number", "")).upper() for account in cash.get("accounts") or []}
    return [number for number in named if isinstance(number, str) and number.upper() not in listed]


async def company_details(
    session: AsyncSession, *, firm_id: uuid.UUID, client_id: uuid.UUID, company_id: uuid.UUID
) -> CompanyDetails | None:
    client = await client_in_firm(session, firm_id=firm_id, client_id=client_id)
    company = await company_in_firm(session, firm_id=firm_id, client_id=client_id, company_id=company_id)
    if client is None or company is None:
        return None
    figures = parsed_json(company.figures_json)
    return CompanyDetails(
        client_id=client.client_id,
        client_name=client.name,
        client_url=client.client_url,
        company_id=company.company_id,
        company_name=company.company_name,
        display_name=company.display_name,
        state=company.state,
        as_of=company.as_of,
        currency_code=company.currency_code,
        web_client_link=company.web_client_link,
        figures=figures,
        failure=parsed_json(company.failure_json),
        next_attempt_at=company.next_attempt_at,
        exchange_rates=[
            ExchangeRateView(
                currency_code=r.currency_code,
                lcy_per_unit=None if r.lcy_per_unit is None else format(Decimal(r.lcy_per_unit).normalize(), "f"),
                starting_date=r.starting_date,
            )
            for r in await session.scalars(
                select(CompanyRateRow)
                .where(
                    col(CompanyRateRow.client_id) == client_id,
                    col(CompanyRateRow.company_id) == company_id,
                    col(CompanyRateRow.firm_id) == firm_id,
                )
                .order_by(col(CompanyRateRow.currency_code))
            )
        ],
        exchange_rates_unavailable=company.exchange_rates_unavailable,
        change_notifications=company_notifications(company),
        client_today=client_today(card_time_zone(client), datetime.now(UTC)),
        cash_accounts_not_found=cash_accounts_not_found(json.loads(client.card_json), figures),
    )
