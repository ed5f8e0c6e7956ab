"""Answering a command: every outcome is a reply in the one wire format, never silence."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from faststream.nats import NatsBroker
from pydantic import BaseModel, ConfigDict
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub_common import commands
from hub_common.command_handling import CommandServer, answer
from hub_common.commands import CommandRejected, RejectionReason, refused
from hub_common.db import create_engine, session_factory
from hub_common.events import Actor, ClientCard

FIRM = uuid.uuid4()


class Ping(BaseModel):
    firm_id: uuid.UUID
    correlation_id: str
    count: int


class Pong(BaseModel):
    count: int


def body(**fields: Any) -> bytes:
    return json.dumps({"firm_id": str(FIRM), "correlation_id": "c-1", "count": 1} | fields).encode()


async def pong(command: Ping) -> BaseModel:
    return Pong(count=command.count + 1)


async def refuse(command: Ping) -> BaseModel:
    raise refused(RejectionReason.NOT_FOUND, "No such thing", field="count")


async def fail(command: Ping) -> BaseModel:
    raise RuntimeError("a bug, with details nobody outside should read")


def reply_of(encoded: bytes) -> dict[str, Any]:
    reply: dict[str, Any] = json.loads(encoded)
    assert set(reply) == {"result", "rejection"}
    assert (reply["result"] is None) != (reply["rejection"] is None), "the result or a rejection, never both"
    return reply


async def test_the_result_travels_as_the_reply() -> None:
    reply = reply_of(await answer(body(count=41), Ping, pong, subject="cmd.test", owner="tester"))
    assert reply["result"] == {"count": 42}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (body(count="many"), "count"),
        (body(extra_field_is_fine=1, count=None), "count"),
        (b"{not json", None),
    ],
    # Named by case, not by the random firm id: parallel workers must collect the same ids.
    ids=["wrong-type", "null", "not-json"],
)
async def test_a_malformed_command_is_refused_as_invalid(payload: bytes, field: str | None) -> None:
    rejection = reply_of(await answer(payload, Ping, pong, subject="cmd.test", owner="tester"))["rejection"]
    assert rejection["reason"] == RejectionReason.INVALID.value
    assert rejection["field"] == field


async def test_a_refusal_is_the_rejection_and_reaches_the_sender_as_the_same_type() -> None:
    encoded = await answer(body(), Ping, refuse, subject="cmd.test", owner="tester")
    reply = commands.CommandReply[Pong].model_validate_json(encoded)
    assert reply.rejection is not None
    assert (reply.rejection.reason, reply.rejection.message, reply.rejection.field) == (
        RejectionReason.NOT_FOUND,
        "No such thing",
        "count",
    )
    assert isinstance(refused(RejectionReason.INVALID, "x"), CommandRejected)


async def test_an_unexpected_failure_is_unavailable_without_its_details() -> None:
    rejection = reply_of(await answer(body(), Ping, fail, subject="cmd.test", owner="tester"))["rejection"]
    assert rejection["reason"] == RejectionReason.UNAVAILABLE.value
    assert rejection["message"] == "The tester failed; try again"


async def test_the_encoder_may_refuse_too() -> None:
    def too_large(result: BaseModel) -> bytes:
        raise refused(RejectionReason.UPSTREAM, "too large to travel")

    encoded = await answer(body(), Ping, pong, subject="cmd.test", owner="tester", encode=too_large)
    assert reply_of(encoded)["rejection"]["message"] == "too large to travel"


# ---------------------------------------------------------------- one transaction per command


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(f"sqlite:///{tmp_path / 'commands.db'}")
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE things (name TEXT PRIMARY KEY)"))
    yield session_factory(engine)
    await engine.dispose()


async def names(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        return list((await session.execute(text("SELECT name FROM things ORDER BY name"))).scalars())


async def test_a_committed_command_wakes_the_relay_and_a_refused_one_changes_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    woken: list[str] = []
    server = CommandServer(NatsBroker(), sessions, queue="tester", after_commit=lambda: woken.append("relay"))

    async with server.transaction() as session:
        await session.execute(text("INSERT INTO things VALUES ('first')"))
    assert woken == ["relay"]

    with pytest.raises(CommandRejected) as refusal:
        async with server.transaction() as session:
            await session.execute(text("INSERT INTO things VALUES ('second')"))
            raise refused(RejectionReason.CONFLICT, "no")
    assert refusal.value.rejection.message == "no"
    assert woken == ["relay"], "nothing committed, nothing to relay"
    assert await names(sessions) == ["first"]


async def test_losing_a_race_for_a_unique_row_is_a_conflict(sessions: async_sessionmaker[AsyncSession]) -> None:
    server = CommandServer(NatsBroker(), sessions, queue="tester", after_commit=lambda: None)
    with pytest.raises(CommandRejected) as refusal:
        async with server.transaction() as session:
            await session.execute(text("INSERT INTO things VALUES ('same'), ('same')"))
    assert refusal.value.rejection.reason is RejectionReason.CONFLICT
    assert await names(sessions) == []


class _CardBeforeCashAccounts(BaseModel):
    """The client card as an owner of the release before cash accounts reads it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    client_url: str
    contact_name: str | None = None
    email: str | None = None
    phone: str | None = None
    notes: str | None = None
    assigned_accountant_id: uuid.UUID | None = None
    tax_account_numbers: list[str] | None = None


def test_an_owner_not_yet_upgraded_takes_a_command_that_leaves_a_newer_field_unset() -> None:
    """Mid-upgrade: a new gateway adds a client for an old registry (forbidding unknown fields)."""
    command = commands.AddClient(
        firm_id=uuid.uuid4(),
        actor=Actor.service("test"),
        correlation_id="c",
        card=ClientCard(name="Contoso", client_url="https://businesscentral.dynamics.com/contoso.com/Production"),
    )
    card = json.loads(commands.command_body(command))["card"]
    assert _CardBeforeCashAccounts.model_validate(card).name == "Contoso"
    # What the owner itself reads back is the same command.
    assert commands.AddClient.model_validate_json(commands.command_body(command)) == command
