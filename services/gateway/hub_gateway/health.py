"""The health check load balancers and compose ask: the broker and the database answer."""

from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse

from hub_common.db import database_ok
from hub_gateway.dependencies import (
    State,
)

health = APIRouter(tags=["health"], responses={503: {"description": "The broker or the database does not answer"}})


@health.get("/healthz")
async def healthz(state: State) -> JSONResponse:
    broker_ok = state.broker.connection is not None and state.broker.connection.is_connected
    db_ok = await database_ok(state.engine)
    healthy = broker_ok and db_ok
    return JSONResponse(
        {"status": "ok" if healthy else "degraded", "broker": broker_ok, "database": db_ok},
        status_code=status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE,
    )
