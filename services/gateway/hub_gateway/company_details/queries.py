"""The Company Details pane: one company's figures, cash accounts, forecast and overdue invoices."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from hub_gateway.clients.queries import client_in_firm, company_in_firm, parsed_json


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


async def company_details(
    session: AsyncSession, *, firm_id: uuid.UUID, client_id: uuid.UUID, company_id: uuid.UUID
) -> CompanyDetails | None:
    client = await client_in_firm(session, firm_id=firm_id, client_id=client_id)
    company = await company_in_firm(session, firm_id=firm_id, client_id=client_id, company_id=company_id)
    if client is None or company is None:
        return None
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
        figures=parsed_json(company.figures_json),
        failure=parsed_json(company.failure_json),
        next_attempt_at=company.next_attempt_at,
    )
