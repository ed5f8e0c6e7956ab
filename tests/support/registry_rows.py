"""Rows written straight into the registry's tables, for migration tests that need data
from before a migration (no service code of that time exists to write it)."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


async def insert_old_firm(connection: AsyncConnection, firm_id: uuid.UUID) -> None:
    """A firm as every registry migration since 0001 keeps it."""
    await connection.execute(
        text(
            "INSERT INTO registry_firms (id, name, sample_client_removed, created_at)"
            " VALUES (:id, 'Old firm', false, '2026-11-01 10:00:00')"
        ),
        {"id": firm_id.hex},
    )
