"""Check Errors: every failed connection of a firm, with its technical details."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from hub_gateway.readmodel.models import (
    ClientRow,
    FailureRow,
)


class FailureEntry(BaseModel):
    failure_id: uuid.UUID
    origin: Literal["refresh", "connection_test"]
    client_id: uuid.UUID | None
    client_name: str | None
    client_removed: bool
    company_id: uuid.UUID | None
    company_name: str | None
    tenant: str | None
    environment: str | None
    occurred_at: datetime
    # The classified failure: kind, summary, fix and the technical details.
    failure: dict[str, Any]
    # Set for a refresh waiting to retry: the attempt that failed and when the next is due.
    attempt: int | None = None
    next_attempt_at: datetime | None = None


class FailurePage(BaseModel):
    failures: list[FailureEntry]
    total: int
    offset: int
    limit: int


async def failures(
    session: AsyncSession,
    *,
    firm_id: uuid.UUID,
    client_id: uuid.UUID | None = None,
    offset: int = 0,
    limit: int = 100,
) -> FailurePage:
    conditions: list[ColumnElement[bool]] = [col(FailureRow.firm_id) == firm_id]
    if client_id is not None:
        conditions.append(col(FailureRow.client_id) == client_id)
    total = (await session.execute(select(func.count()).select_from(FailureRow).where(*conditions))).scalar_one()
    statement = (
        select(FailureRow, ClientRow)
        .outerjoin(ClientRow, and_(col(ClientRow.client_id) == FailureRow.client_id, col(ClientRow.firm_id) == firm_id))
        .where(*conditions)
        .order_by(col(FailureRow.occurred_at).desc(), col(FailureRow.failure_id))
        .offset(offset)
        .limit(limit)
    )
    entries = [
        FailureEntry(
            failure_id=failure.failure_id,
            origin="connection_test" if failure.origin == "connection_test" else "refresh",
            client_id=failure.client_id,
            client_name=client.name if client else None,
            client_removed=bool(client and client.removed),
            company_id=failure.company_id,
            company_name=failure.company_name,
            tenant=failure.tenant or (client.tenant if client else None),
            environment=failure.environment or (client.environment if client else None),
            occurred_at=failure.occurred_at,
            failure=json.loads(failure.failure_json),
            attempt=failure.attempt,
            next_attempt_at=failure.next_attempt_at,
        )
        for failure, client in (await session.execute(statement)).all()
    ]
    return FailurePage(failures=entries, total=total, offset=offset, limit=limit)
