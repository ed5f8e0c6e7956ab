"""Test Client URL: ask a fetcher to try a URL and hand its answer to the firm that asked."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from hub_common import commands
from hub_common.commands import CommandRejected
from hub_common.events import ConnectionTested
from hub_common.i18n import N_
from hub_gateway.client_url_tests import queries as client_url_tests_queries
from hub_gateway.clients.endpoints import require_client
from hub_gateway.dependencies import (
    CurrentPrincipal,
    Session,
    State,
    accountant_actor,
    feature_api,
    rejection_error,
)

client_url_tests_api = feature_api("client url tests")


class ConnectionTestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_url: Annotated[str, Field(min_length=1, max_length=2000)]
    client_id: uuid.UUID | None = None


class ConnectionTestAnswer(BaseModel):
    test_id: uuid.UUID | None
    status: Literal["ok", "failed", "pending"]
    # Each company found, with ``readable``: false when BC refuses its data to the hub's app.
    companies: list[dict[str, Any]] = []
    latency_ms: int | None = None
    failure: dict[str, Any] | None = None
    # BC's answer for the first company it refuses, when it refuses some.
    unreadable_failure: dict[str, Any] | None = None


def _answer(tested: ConnectionTested) -> ConnectionTestAnswer:
    unreadable = set(tested.unreadable_company_ids)
    return ConnectionTestAnswer(
        test_id=tested.test_id,
        status="ok" if tested.ok else "failed",
        companies=[
            company.model_dump(mode="json") | {"readable": company.company_id not in unreadable}
            for company in tested.companies
        ],
        latency_ms=tested.latency_ms,
        failure=tested.failure.model_dump(mode="json") if tested.failure else None,
        unreadable_failure=tested.unreadable_failure.model_dump(mode="json") if tested.unreadable_failure else None,
    )


async def _tested(state: State, firm_id: uuid.UUID, test_id: uuid.UUID) -> ConnectionTestAnswer | None:
    """The answer, "pending" while a fetcher works on it, None when this firm never asked."""
    heard = state.connection_tests.recent(firm_id, test_id)
    if heard is not None:
        return _answer(heard)
    async with state.sessions() as session:
        row = await client_url_tests_queries.connection_test(session, firm_id=firm_id, test_id=test_id)
    if row is None:
        return None
    if row.result_json is None:
        return ConnectionTestAnswer(test_id=test_id, status="pending")
    return _answer(ConnectionTested.model_validate_json(row.result_json))


@client_url_tests_api.post("/connection-tests")
async def test_client_url(
    principal: CurrentPrincipal, state: State, session: Session, request: Request, body: ConnectionTestBody
) -> JSONResponse:
    """Test Client URL: OK with the companies found and the latency, or what is wrong.

    A URL that cannot be parsed is answered at once (422); otherwise a fetcher tries to
    reach the client's BC and its ConnectionTested event is awaited for a few seconds (200),
    after which the test id can be polled (202).
    """
    if body.client_id is not None:
        await require_client(session, principal, body.client_id)
    # The wait below needs no database: the connection goes back to the pool now, so a burst
    # of tests cannot starve the projection and every other request of connections.
    await session.close()
    command = commands.TestConnection(
        firm_id=principal.firm_id,
        actor=accountant_actor(principal),
        correlation_id=request.state.correlation_id,
        client_url=body.client_url,
        client_id=body.client_id,
    )
    try:
        started = await commands.send_command(
            state.nats, commands.TEST_CONNECTION, command, commands.ConnectionTestStarted,
            timeout=state.settings.command_timeout_seconds,
        )  # fmt: skip
    except CommandRejected as rejected:
        # An unparsable URL is answered at once, in the API's one error shape (422).
        raise rejection_error(rejected) from rejected
    tested = await state.connection_tests.wait(
        principal.firm_id, started.test_id, timeout=state.settings.connection_test_wait_seconds
    )
    if tested is not None:
        return JSONResponse(_answer(tested).model_dump(mode="json"))
    pending = ConnectionTestAnswer(test_id=started.test_id, status="pending")
    return JSONResponse(pending.model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED)


@client_url_tests_api.get("/connection-tests/{test_id}")
async def connection_test_result(test_id: uuid.UUID, principal: CurrentPrincipal, state: State) -> ConnectionTestAnswer:
    answer = await _tested(state, principal.firm_id, test_id)
    if answer is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=N_("No such connection test"))
    return answer
