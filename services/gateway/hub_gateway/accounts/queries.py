"""The firm's accountants and name, as the read model holds them."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from hub_gateway.accounts.models import ApiToken, BrowserSession
from hub_gateway.readmodel.models import (
    AccountantRow,
    FirmRow,
)


async def firm_name(session: AsyncSession, *, firm_id: uuid.UUID) -> str:
    firm = await session.get(FirmRow, firm_id)
    # No name yet: its FirmCreated not applied (another replica applied a later event first).
    return firm.name if firm is not None and firm.name else "Your accountants"


async def accountant_by_email(session: AsyncSession, email: str) -> AccountantRow | None:
    """A member of a firm with this address (one removed from their firm is not)."""
    result = await session.execute(
        select(AccountantRow).where(AccountantRow.email == email, col(AccountantRow.removed_at).is_(None))
    )
    return result.scalar_one_or_none()


async def accountants(session: AsyncSession, *, firm_id: uuid.UUID) -> list[AccountantRow]:
    """The firm's members, by address."""
    rows = await session.execute(
        select(AccountantRow)
        .where(AccountantRow.firm_id == firm_id, col(AccountantRow.removed_at).is_(None))
        .order_by(AccountantRow.email)
    )
    return list(rows.scalars())


async def access_ended(session: AsyncSession, credential: BrowserSession | ApiToken) -> bool:
    """Whether an owner or admin removed the credential's accountant from the firm since it
    was made. The gateway ends their sessions and tokens when it asks for the removal; this
    covers what that could not: a sign-in on its way meanwhile, a gateway that stopped
    between the registry's answer and ending them."""
    accountant = await session.get(AccountantRow, credential.accountant_id)
    if accountant is None:
        return False  # signed in before the read model had their AccountantJoined
    if accountant.removed_at is not None or accountant.firm_id != credential.firm_id:
        return True
    return accountant.access_ended_at is not None and credential.created_at <= accountant.access_ended_at
