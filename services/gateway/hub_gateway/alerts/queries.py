"""The alerts the firm's rules raised, as the read model holds them (AlertRaised, AlertResolved)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import ColumnElement, func
from sqlalchemy import select as sql_select
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


# The rules a row's marker names, newest first; its count covers them all.
MARKER_RULE_NAMES = 10


class AlertMarker(BaseModel):
    """The open alerts of one company, or of a client as a whole (``company_id`` None)."""

    client_id: uuid.UUID
    company_id: uuid.UUID | None
    count: int
    rule_names: list[str]


class AlertMarkers(BaseModel):
    open_total: int
    markers: list[AlertMarker]


def _open(firm_id: uuid.UUID) -> list[ColumnElement[bool]]:
    return [
        col(AlertRow.firm_id) == firm_id,
        col(AlertRow.started_at).is_not(None),
        col(AlertRow.ended_at).is_(None),
    ]


async def alert_markers(session: AsyncSession, *, firm_id: uuid.UUID, client_ids: list[uuid.UUID]) -> AlertMarkers:
    """How many alerts are open in the whole firm, and for the given clients' companies
    each: however many there are, counted in the database."""
    total = (await session.execute(select(func.count()).select_from(AlertRow).where(*_open(firm_id)))).scalar_one()
    if not client_ids:
        return AlertMarkers(open_total=total, markers=[])
    place = (col(AlertRow.client_id), col(AlertRow.company_id))
    # SQLAlchemy's own select: sqlmodel's typed one takes at most four columns.
    ranked = (
        sql_select(
            col(AlertRow.client_id),
            col(AlertRow.company_id),
            col(AlertRow.rule_name),
            func.row_number()
            .over(partition_by=place, order_by=(col(AlertRow.started_at).desc(), col(AlertRow.episode_id)))
            .label("newest"),
            func.count().over(partition_by=place).label("open_here"),
        )
        .where(*_open(firm_id), col(AlertRow.client_id).in_(client_ids))
        .subquery()
    )
    rows = await session.execute(
        select(ranked.c.client_id, ranked.c.company_id, ranked.c.rule_name, ranked.c.open_here)
        .where(ranked.c.newest <= MARKER_RULE_NAMES)
        .order_by(ranked.c.client_id, ranked.c.company_id, ranked.c.newest)
    )
    markers: dict[tuple[uuid.UUID, uuid.UUID | None], AlertMarker] = {}
    for client_id, company_id, rule_name, open_here in rows:
        marker = markers.setdefault(
            (client_id, company_id),
            AlertMarker(client_id=client_id, company_id=company_id, count=open_here, rule_names=[]),
        )
        marker.rule_names.append(rule_name)
    return AlertMarkers(open_total=total, markers=list(markers.values()))
