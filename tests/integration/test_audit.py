"""`hub audit` and `hub dead-letters` against a real JetStream: filters, JSON lines, who did what."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import nats.errors
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from typer.testing import CliRunner, Result

from hub_cli.audit import parse_moment
from hub_cli.main import app
from hub_common.bus import publish_event
from hub_common.events import (
    Actor,
    ActorKind,
    ClientAdded,
    ClientCard,
    ClientConnection,
    ClientRemoved,
    ClientSource,
    new_envelope,
)
from hub_common.history import HistoryFilter, read_history
from hub_common.streams import event_subject


async def _history(js: JetStreamContext) -> tuple[uuid.UUID, uuid.UUID, str]:
    firm, client = uuid.uuid4(), uuid.uuid4()
    alice = str(uuid.uuid4())
    actor = Actor(kind=ActorKind.ACCOUNTANT, id=alice, display_name="alice@firm.example")
    added = ClientAdded(
        client_id=client,
        card=ClientCard(name="Contoso", client_url="https://businesscentral.dynamics.com/contoso.com"),
        connection=ClientConnection(tenant="contoso.com", environment="Production"),
        source=ClientSource.MANUAL,
    )
    await publish_event(js, new_envelope(added, firm_id=firm, actor=actor))
    await publish_event(js, new_envelope(ClientRemoved(client_id=uuid.uuid4()), firm_id=firm, actor=Actor.service("x")))
    await publish_event(js, new_envelope(ClientRemoved(client_id=client), firm_id=firm, actor=actor))
    await publish_event(js, new_envelope(ClientRemoved(client_id=client), firm_id=uuid.uuid4(), actor=actor))
    return firm, client, alice


async def _cli(nats_url: str, *arguments: str) -> Result:
    """The CLI runs its own event loop, so it runs in a thread beside the test's loop."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(arguments), env={"HUB_NATS_URL": nats_url})


async def _audit(nats_url: str, *arguments: str) -> list[dict[str, object]]:
    result = await _cli(nats_url, "audit", "--json", *arguments)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


async def test_audit_filters_by_firm_client_accountant_and_type(jetstream: JetStreamContext, nats_url: str) -> None:
    firm, client, alice = await _history(jetstream)
    everything = await _audit(nats_url, "--firm", str(firm))
    assert [e["type"] for e in everything] == ["ClientAdded", "ClientRemoved", "ClientRemoved"]
    assert {e["firm_id"] for e in everything} == {str(firm)}
    about_client = await _audit(nats_url, "--firm", str(firm), "--client", str(client))
    assert [e["type"] for e in about_client] == ["ClientAdded", "ClientRemoved"]
    by_alice = await _audit(nats_url, "--firm", str(firm), "--accountant", alice)
    assert all(e["actor"]["id"] == alice for e in by_alice)  # type: ignore[index]
    assert len(by_alice) == 2
    added = await _audit(nats_url, "--firm", str(firm), "--type", "ClientAdded")
    assert [e["data"]["card"]["name"] for e in added] == ["Contoso"]  # type: ignore[index]
    assert await _audit(nats_url, "--firm", str(firm), "--since", "2099-01-01") == []
    assert len(await _audit(nats_url, "--firm", str(firm), "--since", "10m")) == 3


async def test_audit_table_says_who_did_what(jetstream: JetStreamContext, nats_url: str) -> None:
    firm, _, _ = await _history(jetstream)
    result = await _cli(nats_url, "audit", "--firm", str(firm))
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "event" in lines[0]
    assert "accountant:alice@firm.example" in lines[1]
    assert "client 'Contoso'" in lines[1]


async def test_an_event_this_release_cannot_read_is_listed_as_such_and_fails_the_listing(
    jetstream: JetStreamContext, nats_url: str
) -> None:
    """An operator's `hub` a release behind the hub meets events with a field it does not
    know: they are listed in their place as unreadable, and the exit code says the listing
    is not the whole history (before, they were left out and it looked whole)."""
    firm, _, _ = await _history(jetstream)
    newer = new_envelope(ClientRemoved(client_id=uuid.uuid4()), firm_id=firm, actor=Actor.service("x"))
    document = json.loads(newer.model_dump_json())
    document["data"]["removal_reason"] = "a field of a later release"
    await jetstream.publish(
        event_subject(str(firm), "ClientRemoved"), json.dumps(document).encode(), stream="HUB_EVENTS"
    )
    result = await _cli(nats_url, "audit", "--json", "--firm", str(firm))
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [r.get("type", "unreadable") for r in records] == [
        "ClientAdded",
        "ClientRemoved",
        "ClientRemoved",
        "unreadable",
    ]
    assert "removal_reason" in str(records[-1]["error"])
    assert "1 event(s) of the log could not be read" in result.stderr
    table = await _cli(nats_url, "audit", "--firm", str(firm))
    assert table.exit_code == 1 and "(unreadable)" in table.stdout


def test_bad_arguments_are_refused(nats_url: str) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["audit", "--firm", "acme"], env={"HUB_NATS_URL": nats_url}).exit_code == 2
    assert runner.invoke(app, ["audit", "--since", "yesterday"], env={"HUB_NATS_URL": nats_url}).exit_code == 2


def test_moments_are_dates_or_durations() -> None:
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    assert parse_moment("90m", now=now) == now - timedelta(minutes=90)
    assert parse_moment("2d", now=now) == now - timedelta(days=2)
    assert parse_moment("2026-03-03") == datetime(2026, 3, 3, tzinfo=UTC)
    with pytest.raises(ValueError, match="duration"):
        parse_moment("soon")
    for too_far in ("800000d", f"{10**12}s", "99999999999999999999d"):
        with pytest.raises(ValueError, match="before the year 1"):
            parse_moment(too_far, now=now)


async def test_dead_letters_are_listed(jetstream: JetStreamContext, nats_url: str) -> None:
    from hub_common.consumers import Delivery, dead_letter
    from hub_common.streams import EVENTS_STREAM, ConsumerSpec

    spec = ConsumerSpec(EVENTS_STREAM, f"audit-{uuid.uuid4().hex[:6]}", ("hub.>",), 30, 3)
    delivery = Delivery(
        subject="hub.x.client.added",
        stream=EVENTS_STREAM,
        stream_sequence=424242,
        num_delivered=3,
        headers={},
        raw=cast(Msg, None),
    )
    await dead_letter(jetstream, spec, delivery, b'{"poison": true}', "invalid event: test")
    result = await _cli(nats_url, "dead-letters", "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    mine = [r for r in records if r["consumer"] == spec.durable]
    assert len(mine) == 1
    assert mine[0]["payload"] == '{"poison": true}'
    assert mine[0]["error"] == "invalid event: test"


async def test_a_pause_in_delivery_does_not_cut_the_listing_short(
    jetstream: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second without a message (a stream leader moving: nats-py restarts the ordered
    consumer after 10 s) was taken for the end of the log, and the listing stopped there."""
    firm, _, _ = await _history(jetstream)
    subscribe = JetStreamContext.subscribe

    async def pausing_after_the_first(self: JetStreamContext, *args: Any, **kwargs: Any) -> Any:
        subscription = await subscribe(self, *args, **kwargs)
        next_msg = subscription.next_msg
        calls = 0

        async def paused(timeout: float | None = 1.0) -> Msg:
            nonlocal calls
            calls += 1
            if 2 <= calls <= 4:
                await asyncio.sleep(timeout or 0)
                raise nats.errors.TimeoutError
            return await next_msg(timeout=timeout)

        subscription.next_msg = paused  # type: ignore[method-assign]
        return subscription

    monkeypatch.setattr(JetStreamContext, "subscribe", pausing_after_the_first)
    wanted = HistoryFilter(firm_id=firm)
    listed = [envelope.type async for _, envelope in read_history(jetstream, wanted, idle_seconds=0.1)]
    assert listed == ["ClientAdded", "ClientRemoved", "ClientRemoved"]


async def test_following_up_to_a_time_ends_on_a_busy_log(jetstream: JetStreamContext) -> None:
    """Events every few tenths of a second: the end of --until was looked for only after a
    second without any, so following a busy hub never ended."""
    firm, _, _ = await _history(jetstream)
    stop = asyncio.Event()

    async def busy() -> None:
        while not stop.is_set():
            await publish_event(
                jetstream, new_envelope(ClientRemoved(client_id=uuid.uuid4()), firm_id=firm, actor=Actor.service("x"))
            )
            await asyncio.sleep(0.2)

    publishing = asyncio.create_task(busy())
    try:
        wanted = HistoryFilter(firm_id=firm, until=datetime.now(UTC) - timedelta(minutes=5))

        async def follow() -> list[str]:
            return [e.type async for _, e in read_history(jetstream, wanted, follow=True)]

        followed = await asyncio.wait_for(follow(), timeout=10)
        assert followed == [], "every event is later than --until"
    finally:
        stop.set()
        await publishing
