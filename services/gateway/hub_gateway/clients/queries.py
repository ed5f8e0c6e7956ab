"""The clients of a firm as the read model holds them, and whether each tenant granted access."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from hub_gateway.readmodel.models import (
    ClientRow,
    CompanyRow,
    TenantAccessRow,
    client_shown,
)


class TenantAccess(BaseModel):
    """Whether the client's tenant lets the firm read it (see the README's trust model)."""

    # granted: figures are read; waiting: the client has not given permission yet;
    # revoked: permission was taken back (reason says by whom).
    state: Literal["granted", "waiting", "revoked"]
    method: str | None = None
    granted_by: str | None = None
    reason: str | None = None
    changed_at: datetime | None = None


WAITING = TenantAccess(state="waiting")


def tenant_access(row: TenantAccessRow | None) -> TenantAccess:
    if row is None:
        return WAITING
    return TenantAccess(
        state="granted" if row.granted else "revoked",
        method=row.method,
        granted_by=row.granted_by,
        reason=row.reason,
        changed_at=row.changed_at,
    )


class CompanyNotifications(BaseModel):
    """How a company's changes reach the hub: BC notifies them (``subscribed``), it is read on
    schedule because the environment's subscriptions are used up (``polling``), or
    subscribing failed (``failed``, with BC's answer); None: not subscribed (yet)."""

    company_id: uuid.UUID
    company_name: str
    state: str | None
    entities: list[str] = []
    expires_at: datetime | None = None
    detail: str | None = None
    failure: dict[str, Any] | None = None
    checked_at: datetime | None = None
    last_change_at: datetime | None = None


def company_notifications(row: CompanyRow) -> CompanyNotifications:
    details = parsed_json(row.notification_json) or {}
    return CompanyNotifications(
        company_id=row.company_id,
        company_name=row.company_name,
        state=row.notification_state,
        entities=details.get("entities") or [],
        expires_at=details.get("expires_at"),
        detail=details.get("detail"),
        failure=details.get("failure"),
        checked_at=row.notification_checked_at,
        last_change_at=row.last_change_notice_at,
    )


async def notifications_by_client(
    session: AsyncSession, *, firm_id: uuid.UUID, client_id: uuid.UUID | None = None
) -> dict[uuid.UUID, list[CompanyNotifications]]:
    query = select(CompanyRow).where(CompanyRow.firm_id == firm_id)
    if client_id is not None:
        query = query.where(CompanyRow.client_id == client_id)
    by_client: dict[uuid.UUID, list[CompanyNotifications]] = {}
    for row in (await session.execute(query.order_by(CompanyRow.company_name))).scalars():
        by_client.setdefault(row.client_id, []).append(company_notifications(row))
    return by_client


class ClientSummary(BaseModel):
    client_id: uuid.UUID
    name: str
    client_url: str
    tenant: str
    tenant_id: uuid.UUID | None
    environment: str
    source: str
    state: str
    card: dict[str, Any]
    # Which save of the card this is (the stream position of its last change): sent back in
    # If-Match, a save made on a card someone else saved since is refused (412).
    card_version: int = 0
    # Which revision of the card the registry saved it as (a PUT answers the one it made).
    card_revision: int = 0
    failure: dict[str, Any] | None
    access: TenantAccess
    # Per company: whether Business Central notifies the hub of its changes.
    change_notifications: list[CompanyNotifications] = []


def parsed_json(text: str | None) -> dict[str, Any] | None:
    return json.loads(text) if text else None


def client_summary(
    row: ClientRow, access: TenantAccessRow | None, notifications: list[CompanyNotifications] | None = None
) -> ClientSummary:
    return ClientSummary(
        client_id=row.client_id,
        name=row.name,
        client_url=row.client_url,
        tenant=row.tenant,
        tenant_id=row.tenant_id,
        environment=row.environment,
        source=row.source,
        state=row.state,
        card=json.loads(row.card_json),
        card_version=row.events_sequence,
        card_revision=row.card_revision,
        failure=parsed_json(row.failure_json),
        access=tenant_access(access),
        change_notifications=notifications or [],
    )


async def firm_tenant_access(session: AsyncSession, *, firm_id: uuid.UUID) -> dict[uuid.UUID, TenantAccessRow]:
    rows = (await session.execute(select(TenantAccessRow).where(TenantAccessRow.firm_id == firm_id))).scalars()
    return {row.tenant_id: row for row in rows}


async def access_of(session: AsyncSession, client: ClientRow) -> TenantAccessRow | None:
    if client.tenant_id is None:
        return None
    return await session.get(TenantAccessRow, (client.firm_id, client.tenant_id))


async def clients(session: AsyncSession, *, firm_id: uuid.UUID) -> list[ClientSummary]:
    rows = (
        await session.execute(
            select(ClientRow).where(ClientRow.firm_id == firm_id, client_shown()).order_by(ClientRow.name)
        )
    ).scalars()
    access = await firm_tenant_access(session, firm_id=firm_id)
    notifications = await notifications_by_client(session, firm_id=firm_id)
    return [
        client_summary(row, access.get(row.tenant_id) if row.tenant_id else None, notifications.get(row.client_id))
        for row in rows
    ]


async def client_in_firm(session: AsyncSession, *, firm_id: uuid.UUID, client_id: uuid.UUID) -> ClientRow | None:
    row = await session.get(ClientRow, client_id)
    if row is None or row.firm_id != firm_id or row.removed or not row.client_url:
        return None
    return row


def card_time_zone(row: ClientRow) -> str | None:
    """The client card's time zone, whose date is the client's "today" (None: UTC)."""
    zone = json.loads(row.card_json).get("time_zone")
    return zone if isinstance(zone, str) else None


async def company_in_firm(
    session: AsyncSession, *, firm_id: uuid.UUID, client_id: uuid.UUID, company_id: uuid.UUID
) -> CompanyRow | None:
    row = await session.get(CompanyRow, (client_id, company_id))
    return row if row is not None and row.firm_id == firm_id else None
