"""The alerts the firm's rules raised, as the read model holds them (AlertRaised, AlertResolved)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from hub_common.i18n import N_
from hub_gateway.readmodel.models import AlertRow

# What a rule may watch, as the Alerts page names it (hub_registry.domain.alerts.Figure).
FIGURE_LABELS: dict[str, str] = {
    "cash": N_("Cash"),
    "overdue_sales": N_("Overdue sales invoices"),
    "overdue_purchases": N_("Overdue purchase invoices"),
    "purchases_due_next_week": N_("Purchase invoices due next week"),
    "taxes_due": N_("Taxes due"),
    "sales_this_month": N_("Sales this month"),
    "forecast_low_point": N_("Forecast low point"),
    "runway_weeks": N_("Cash runway (weeks)"),
    "failing_hours": N_("Failing for (hours)"),
}


class Alert(BaseModel):
    """One episode of a rule: open while ``ended_at`` is null."""

    episode_id: uuid.UUID
    rule_id: uuid.UUID | None
    rule_name: str
    client_id: uuid.UUID
    client_name: str
    company_id: uuid.UUID | None
    company_name: str | None
    figure: str
    comparison: str
    threshold: Decimal | None
    value: Decimal | None
    currency_code: str | None
    started_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None


class Alerts(BaseModel):
    alerts: list[Alert]


AlertStatus = Literal["open", "all"]


def _decimal(text: str) -> Decimal | None:
    return Decimal(text) if text else None


async def alerts(session: AsyncSession, *, firm_id: uuid.UUID, status: AlertStatus, limit: int) -> Alerts:
    """The firm's alerts, newest first: the open ones, or every one of late."""
    query = select(AlertRow).where(col(AlertRow.firm_id) == firm_id, col(AlertRow.started_at).is_not(None))
    if status == "open":
        query = query.where(col(AlertRow.ended_at).is_(None))
    rows = (await session.execute(query.order_by(col(AlertRow.started_at).desc()).limit(limit))).scalars()
    return Alerts(
        alerts=[
            Alert(
                episode_id=row.episode_id,
                rule_id=row.rule_id,
                rule_name=row.rule_name,
                client_id=row.client_id,
                client_name=row.client_name,
                company_id=row.company_id,
                company_name=row.company_name,
                figure=row.figure,
                comparison=row.comparison,
                threshold=_decimal(row.threshold),
                value=_decimal(row.value),
                currency_code=row.currency_code,
                started_at=row.started_at,
                ended_at=row.ended_at,
                end_reason=row.end_reason,
            )
            for row in rows
        ]
    )
