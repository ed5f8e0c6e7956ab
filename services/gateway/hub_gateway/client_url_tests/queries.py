"""A Test Client URL's recorded answer."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from hub_gateway.readmodel.models import (
    ConnectionTestRow,
)


async def connection_test(session: AsyncSession, *, firm_id: uuid.UUID, test_id: uuid.UUID) -> ConnectionTestRow | None:
    row = await session.get(ConnectionTestRow, test_id)
    return row if row is not None and row.firm_id == firm_id else None
