"""When clients are refreshed without anyone asking: the firm's schedule and a client's own."""

from __future__ import annotations

import uuid

from fastapi import Request, status

from hub_common import commands
from hub_gateway.clients.endpoints import require_client
from hub_gateway.dependencies import (
    CurrentPrincipal,
    ManagingPrincipal,
    Session,
    State,
    accountant_actor,
    feature_api,
    send_command,
)
from hub_gateway.refresh_schedule import queries
from hub_gateway.refresh_schedule.queries import Schedule, Schedules

refresh_schedule_api = feature_api("refresh schedule")


@refresh_schedule_api.get("/refresh-schedule")
async def refresh_schedules(principal: CurrentPrincipal, session: Session) -> Schedules:
    """The firm's schedule (null: the hub's default) and the clients that have their own."""
    return await queries.schedules(session, firm_id=principal.firm_id)


@refresh_schedule_api.put("/refresh-schedule", status_code=status.HTTP_202_ACCEPTED)
async def set_firm_schedule(
    schedule: Schedule, principal: ManagingPrincipal, state: State, request: Request
) -> Schedule:
    """The schedule of every client without one of its own (owners and admins)."""
    await _send(state, request, principal, schedule, client_id=None)
    return schedule


@refresh_schedule_api.put("/clients/{client_id}/refresh-schedule", status_code=status.HTTP_202_ACCEPTED)
async def set_client_schedule(
    client_id: uuid.UUID,
    schedule: Schedule,
    principal: ManagingPrincipal,
    state: State,
    session: Session,
    request: Request,
) -> Schedule:
    """A client's own schedule, which replaces the firm's for it, quiet hours included."""
    await require_client(session, principal, client_id)
    await _send(state, request, principal, schedule, client_id=client_id)
    return schedule


@refresh_schedule_api.delete("/clients/{client_id}/refresh-schedule", status_code=status.HTTP_202_ACCEPTED)
async def follow_firm_schedule(
    client_id: uuid.UUID, principal: ManagingPrincipal, state: State, session: Session, request: Request
) -> commands.RefreshScheduleSaved:
    """The client follows the firm's schedule again."""
    await require_client(session, principal, client_id)
    return await _send(state, request, principal, None, client_id=client_id)


async def _send(
    state: State,
    request: Request,
    principal: ManagingPrincipal,
    schedule: Schedule | None,
    *,
    client_id: uuid.UUID | None,
) -> commands.RefreshScheduleSaved:
    """The registry's command; no schedule means the client follows the firm's."""
    command = commands.SetRefreshSchedule(
        firm_id=principal.firm_id,
        actor=accountant_actor(principal),
        correlation_id=request.state.correlation_id,
        client_id=client_id,
        follows_firm=schedule is None,
        **(schedule.model_dump() if schedule is not None else {}),
    )
    return await send_command(state, request, commands.SET_REFRESH_SCHEDULE, command, commands.RefreshScheduleSaved)
