"""The refresh schedules as the read model holds them: the firm's and each client's own."""

from __future__ import annotations

import json
import uuid
from datetime import time
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from hub_gateway.readmodel.models import ClientRow, FirmRow, client_shown


class Schedule(BaseModel):
    """When clients are refreshed on schedule. ``every_minutes`` None: never on schedule
    (only on request). Quiet hours are wall-clock times in ``time_zone``, both or neither,
    and may span midnight. A field it does not know is refused: a misspelt one
    (``quiet_start``, ``timezone``) would otherwise leave the schedule without it."""

    model_config = ConfigDict(extra="forbid")

    every_minutes: Annotated[int, Field(ge=15, le=7 * 24 * 60)] | None
    quiet_from: time | None = None
    quiet_until: time | None = None
    time_zone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"


class ClientSchedule(BaseModel):
    client_id: uuid.UUID
    client_name: str
    schedule: Schedule


class Schedules(BaseModel):
    # None: the hub's default (HUB_SCHEDULED_REFRESH_SECONDS of the registry).
    firm: Schedule | None
    # Clients with a schedule of their own; every other client follows the firm's.
    clients: list[ClientSchedule]


def parsed_schedule(text: str | None) -> Schedule | None:
    return Schedule.model_validate(json.loads(text)) if text else None


async def schedules(session: AsyncSession, *, firm_id: uuid.UUID) -> Schedules:
    firm = await session.get(FirmRow, firm_id)
    own = (
        await session.execute(
            select(ClientRow)
            .where(
                col(ClientRow.firm_id) == firm_id,
                client_shown(),
                col(ClientRow.refresh_schedule_json).is_not(None),
            )
            .order_by(col(ClientRow.name))
        )
    ).scalars()
    return Schedules(
        firm=parsed_schedule(firm.refresh_schedule_json) if firm else None,
        clients=[
            ClientSchedule(client_id=row.client_id, client_name=row.name, schedule=schedule)
            for row in own
            if (schedule := parsed_schedule(row.refresh_schedule_json)) is not None
        ],
    )
