"""The firm's accountants and name, as the read model holds them."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from hub_gateway.readmodel.models import (
    AccountantRow,
    FirmRow,
)


async def firm_name(session: AsyncSession, *, firm_id: uuid.UUID) -> str:
    firm = await session.get(FirmRow, firm_id)
    return firm.name if firm is not None else "Your accountants"


async def accountant_by_email(session: AsyncSession, email: str) -> AccountantRow | None:
    result = await session.execute(select(AccountantRow).where(AccountantRow.email == email))
    return result.scalar_one_or_none()


async def accountants(session: AsyncSession, *, firm_id: uuid.UUID) -> list[AccountantRow]:
    rows = await session.execute(
        select(AccountantRow).where(AccountantRow.firm_id == firm_id).order_by(AccountantRow.email)
    )
    return list(rows.scalars())
