"""Reading the read model; every query takes the firm from the authenticated principal."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from hub_gateway.readmodel.models import AccountantRow, ClientRow, CompanyRow, ConnectionTestRow


class DashboardRow(BaseModel):
    client_id: uuid.UUID
    client_name: str
    company_id: uuid.UUID | None
    company_name: str | None
    state: str
    as_of: datetime | None
    currency_code: str | None
    web_client_link: str | None
    figures: dict[str, Any] | None
    failure: dict[str, Any] | None


class ClientSummary(BaseModel):
    client_id: uuid.UUID
    name: str
    client_url: str
    tenant: str
    environment: str
    source: str
    state: str
    card: dict[str, Any]
    failure: dict[str, Any] | None


def _loads(text: str | None) -> dict[str, Any] | None:
    return json.loads(text) if text else None


async def dashboard_rows(session: AsyncSession, *, firm_id: uuid.UUID) -> list[DashboardRow]:
    clients = list(
        (
            await session.execute(
                select(ClientRow)
                .where(ClientRow.firm_id == firm_id, col(ClientRow.removed).is_(False))
                .order_by(ClientRow.name)
            )
        ).scalars()
    )
    companies = list(
        (
            await session.execute(
                select(CompanyRow).where(CompanyRow.firm_id == firm_id).order_by(CompanyRow.company_name)
            )
        ).scalars()
    )
    by_client: dict[uuid.UUID, list[CompanyRow]] = {}
    for company in companies:
        by_client.setdefault(company.client_id, []).append(company)
    rows: list[DashboardRow] = []
    for client in clients:
        client_companies = by_client.get(client.client_id, [])
        if not client_companies:
            # A client whose companies are not known yet (or could not be read) still shows.
            rows.append(
                DashboardRow(
                    client_id=client.client_id,
                    client_name=client.name,
                    company_id=None,
                    company_name=None,
                    state=client.state,
                    as_of=None,
                    currency_code=None,
                    web_client_link=None,
                    figures=None,
                    failure=_loads(client.failure_json),
                )
            )
            continue
        for company in client_companies:
            rows.append(
                DashboardRow(
                    client_id=client.client_id,
                    client_name=client.name,
                    company_id=company.company_id,
                    company_name=company.company_name,
                    state=company.state,
                    as_of=company.as_of,
                    currency_code=company.currency_code,
                    web_client_link=company.web_client_link,
                    figures=_loads(company.figures_json),
                    failure=_loads(company.failure_json),
                )
            )
    return rows


async def clients(session: AsyncSession, *, firm_id: uuid.UUID) -> list[ClientSummary]:
    rows = (
        await session.execute(
            select(ClientRow)
            .where(ClientRow.firm_id == firm_id, col(ClientRow.removed).is_(False))
            .order_by(ClientRow.name)
        )
    ).scalars()
    return [
        ClientSummary(
            client_id=row.client_id,
            name=row.name,
            client_url=row.client_url,
            tenant=row.tenant,
            environment=row.environment,
            source=row.source,
            state=row.state,
            card=json.loads(row.card_json),
            failure=_loads(row.failure_json),
        )
        for row in rows
    ]


async def client_in_firm(session: AsyncSession, *, firm_id: uuid.UUID, client_id: uuid.UUID) -> ClientRow | None:
    row = await session.get(ClientRow, client_id)
    if row is None or row.firm_id != firm_id or row.removed:
        return None
    return row


async def accountant_by_email(session: AsyncSession, email: str) -> AccountantRow | None:
    result = await session.execute(select(AccountantRow).where(AccountantRow.email == email))
    return result.scalar_one_or_none()


async def connection_test(session: AsyncSession, *, firm_id: uuid.UUID, test_id: uuid.UUID) -> ConnectionTestRow | None:
    row = await session.get(ConnectionTestRow, test_id)
    return row if row is not None and row.firm_id == firm_id else None


async def accountants(session: AsyncSession, *, firm_id: uuid.UUID) -> list[AccountantRow]:
    rows = await session.execute(
        select(AccountantRow).where(AccountantRow.firm_id == firm_id).order_by(AccountantRow.email)
    )
    return list(rows.scalars())


async def company_in_firm(
    session: AsyncSession, *, firm_id: uuid.UUID, client_id: uuid.UUID, company_id: uuid.UUID
) -> CompanyRow | None:
    row = await session.get(CompanyRow, (client_id, company_id))
    return row if row is not None and row.firm_id == firm_id else None
