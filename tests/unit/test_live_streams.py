"""Ending the open live streams when the gateway stops: a stream hears it even when its
queue overflowed afterwards (the overflow empties the queue for a reload)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from hub_common.i18n import translator
from hub_gateway.dashboard import live as live_module
from hub_gateway.dashboard.endpoints import _messages
from hub_gateway.dashboard.live import (
    LIVE_READS_AT_ONCE,
    QUEUE_LIMIT,
    ROWS_PER_EVENT_AT_MOST,
    LiveResponse,
    LiveUpdates,
    Notice,
    SharedReads,
)


@dataclass
class _Notice:
    subject: str
    data: bytes


async def _hear_body(live: LiveUpdates, firm_id: uuid.UUID, body: dict[str, Any]) -> None:
    await live._heard(cast(Msg, _Notice(f"live.{firm_id}.changes", json.dumps(body).encode())))


async def _hear(live: LiveUpdates, firm_id: uuid.UUID) -> None:
    await _hear_body(live, firm_id, {"client_ids": [str(uuid.uuid4())], "new_failures": False})


async def test_an_end_survives_an_overflowing_queue() -> None:
    live = LiveUpdates(cast(Client, cast(Any, None)))
    firm_id = uuid.uuid4()
    with live.listen(firm_id) as queue:
        for _ in range(QUEUE_LIMIT - 1):
            await _hear(live, firm_id)
        live.end_streams()
        assert live.ending
        # Notices keep coming while the server stops; the full queue is emptied for a reload.
        for _ in range(3):
            await _hear(live, firm_id)
        waiting = [queue.get_nowait() for _ in range(queue.qsize())]
        assert any(notice.end for notice in waiting), "the end was dropped with the overflow"


async def test_a_sign_out_notice_survives_an_overflowing_queue() -> None:
    live = LiveUpdates(cast(Client, cast(Any, None)))
    firm_id, accountant_id = uuid.uuid4(), uuid.uuid4()
    with live.listen(firm_id) as queue:
        await _hear_body(live, firm_id, {"client_ids": [], "sign_in_changed_of": [str(accountant_id)]})
        for _ in range(QUEUE_LIMIT + 2):
            await _hear(live, firm_id)
        waiting = [queue.get_nowait() for _ in range(queue.qsize())]
        assert any(notice.reload for notice in waiting)
        assert any(accountant_id in notice.sign_in_changed_of for notice in waiting), "the check was dropped"


async def test_each_stream_gets_its_own_notice_and_an_older_replicas_notice_is_read() -> None:
    live = LiveUpdates(cast(Client, cast(Any, None)))
    firm_id = uuid.uuid4()
    with live.listen(firm_id) as first, live.listen(firm_id) as second:
        # As a replica before sign-in notices publishes it: no sign_in_changed_of.
        await _hear_body(live, firm_id, {"client_ids": [str(uuid.uuid4())], "new_failures": True})
        mine, theirs = first.get_nowait(), second.get_nowait()
        assert mine is not theirs
        mine.merge(Notice(reload=True))
        assert not theirs.reload, "one stream's merge reached another stream's notice"
        assert theirs.new_failures and not theirs.sign_in_changed_of


async def test_pages_that_got_the_same_notice_share_one_read() -> None:
    """Twenty tabs of one firm ran twenty reads of each change; the same notice is read once,
    a later one (or another language or currency) again."""
    shared = SharedReads()
    reads: list[str] = []
    started = asyncio.Event()
    release = asyncio.Event()

    def read(what: str) -> Callable[[], Awaitable[str]]:
        async def run() -> str:
            reads.append(what)
            started.set()
            await release.wait()
            return what

        return run

    key = (uuid.uuid4(), 7, frozenset({uuid.uuid4()}), "EUR", "de")
    streams = [asyncio.ensure_future(shared.read(key, read("first"))) for _ in range(20)]
    await started.wait()
    # A page that closes while the read runs does not take the read from the others.
    streams[0].cancel()
    release.set()
    answers = await asyncio.gather(*streams[1:])
    assert answers == ["first"] * 19 and reads == ["first"]
    assert await shared.read((*key[:1], 8, *key[2:]), read("later")) == "later"
    assert reads == ["first", "later"]


async def test_a_failed_shared_read_is_tried_again_by_the_next_page() -> None:
    shared = SharedReads()
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("database away")
        return "rows"

    with pytest.raises(ConnectionError):
        await shared.read("key", flaky)
    assert await shared.read("key", flaky) == "rows"


async def test_a_reconnection_asks_every_open_page_to_reload_keeping_what_it_must_end_or_check() -> None:
    live = LiveUpdates(cast(Client, cast(Any, None)))
    firm_id, other_firm, accountant_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with live.listen(firm_id) as queue, live.listen(other_firm) as other_queue:
        await _hear_body(live, firm_id, {"client_ids": [], "sign_in_changed_of": [str(accountant_id)]})
        await _hear(live, firm_id)
        live.resync()
        [notice] = [queue.get_nowait() for _ in range(queue.qsize())]
        assert notice.reload and accountant_id in notice.sign_in_changed_of
        assert other_queue.get_nowait().reload


async def test_a_finished_shared_read_is_let_go_once_its_streams_had_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A firm-wide notice's rows can be megabytes: kept until 64 newer notices pushed them
    out, a quiet replica held them for nothing."""
    monkeypatch.setattr(live_module, "KEEP_FINISHED_SECONDS", 0.05)
    shared = SharedReads()

    async def rows() -> str:
        return "rows"

    assert await shared.read("key", rows) == "rows"
    assert "key" in shared._reads
    await asyncio.sleep(0.2)
    assert shared._reads == {}


async def test_a_page_that_stops_reading_has_its_stream_ended_and_its_place_given_back() -> None:
    """A page whose connection stays open while it reads nothing: the server's send waits for
    it (here, for ever). The event is given a while to leave; then the stream ends and runs
    its cleanup, which gives its place among the streams back."""
    given_back = asyncio.Event()

    async def events() -> AsyncGenerator[str, None]:
        try:
            while True:
                yield "event: rows\ndata: {}\n\n"
        finally:
            given_back.set()

    sent: list[dict[str, Any]] = []

    async def stalled_page(message: dict[str, Any]) -> None:
        sent.append(message)
        if message.get("type") == "http.response.body":
            await asyncio.Event().wait()  # the page never reads

    async def never_leaves() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    response = LiveResponse(events(), send_within=0.2, headers={"Cache-Control": "no-store"})
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "method": "GET"}
    await asyncio.wait_for(response(scope, never_leaves, stalled_page), timeout=5)  # type: ignore[arg-type]
    assert given_back.is_set()
    assert sent[0]["type"] == "http.response.start" and (b"cache-control", b"no-store") in sent[0]["headers"]


def test_a_change_of_more_clients_than_an_event_carries_is_a_reload() -> None:
    notice = Notice(client_ids={uuid.uuid4() for _ in range(ROWS_PER_EVENT_AT_MOST + 1)})
    messages = asyncio.run(_messages(cast(Any, None), cast(Any, None), notice, cast(Any, None)))
    assert messages == ["event: reload\ndata: {}\n\n"]


async def test_the_live_streams_of_a_replica_read_the_database_a_few_at_a_time() -> None:
    """A firm's thousand open pages each read the accountant's preferences at a change: at
    most LIVE_READS_AT_ONCE of them hold one of the pool's connections at once."""
    held = 0
    most = 0

    class Session:
        async def get(self, *args: object, **kwargs: object) -> None:
            return None  # no preferences saved: the defaults

    @asynccontextmanager
    async def session() -> AsyncIterator[Session]:
        nonlocal held, most
        held += 1
        most = max(most, held)
        try:
            await asyncio.sleep(0.01)  # a connection's round trip
            yield Session()
        finally:
            held -= 1

    state = SimpleNamespace(live=LiveUpdates(cast(Client, cast(Any, None))), sessions=session)
    principal = SimpleNamespace(accountant_id=uuid.uuid4(), firm_id=uuid.uuid4())
    failures_only = Notice(new_failures=True)
    answers = await asyncio.gather(
        *(_messages(cast(Any, state), cast(Any, principal), failures_only, translator("en")) for _ in range(50))
    )
    assert all(messages == ["event: failures\ndata: {}\n\n"] for messages in answers)
    assert most == LIVE_READS_AT_ONCE
