"""The real broker from a test's side: publishing an event as a service would, reading a
firm's audit log, and whether a firm's refreshes have all ended."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.aio.client import Client

from hub_common.bus import connect, publish_event
from hub_common.events import (
    Actor,
    CompanySnapshot,
    Envelope,
    EventData,
    RefreshRequested,
    decode_event,
    new_envelope,
)
from hub_common.history import HistoryFilter, read_history
from hub_common.streams import SNAPSHOTS_STREAM
from tests.faults.ledger import Companies, read_ledger
from tests.support.waiting import eventually

T = TypeVar("T")


def _on_the_broker(nats_url: str, work: Callable[[Client], Awaitable[T]]) -> T:
    """Run ``work`` with a connection of its own, in its own thread and event loop, so
    synchronous tests (and Playwright's, whose loop holds the main thread) can call it."""

    async def run() -> T:
        nats = await connect(nats_url, name="test")
        try:
            return await work(nats)
        finally:
            await nats.close()

    results: list[T] = []
    failures: list[BaseException] = []

    def thread_main() -> None:
        try:
            results.append(asyncio.run(run()))
        except BaseException as error:  # handed to the calling thread
            failures.append(error)

    thread = threading.Thread(target=thread_main)
    thread.start()
    thread.join(60)
    if thread.is_alive():
        raise TimeoutError("the broker did not answer within 60 s")
    if failures:
        raise failures[0]
    return results[0]


def publish(nats_url: str, data: EventData, *, firm_id: uuid.UUID, actor: Actor) -> None:
    """Publish through the project's publish helper and wait for JetStream's acknowledgement."""

    async def send(nats: Client) -> None:
        await publish_event(nats.jetstream(), new_envelope(data, firm_id=firm_id, actor=actor))

    _on_the_broker(nats_url, send)


def firm_events(nats_url: str, firm_id: uuid.UUID, *event_types: str) -> list[Envelope[EventData]]:
    """The firm's events of these types in the audit log (HUB_EVENTS), oldest first, read as
    `hub audit` reads them."""

    async def read(nats: Client) -> list[Envelope[EventData]]:
        wanted = HistoryFilter(firm_id=firm_id, event_types=frozenset(event_types))
        return [envelope async for _, envelope in read_history(nats.jetstream(), wanted)]

    return _on_the_broker(nats_url, read)


def requested_refresh(nats_url: str, firm_id: uuid.UUID, refresh_id: uuid.UUID) -> RefreshRequested:
    """The RefreshRequested of one refresh, as the audit log holds it. The registry answers a
    refresh once the event is in its outbox; the relay puts it on the stream a moment later,
    so this waits for it (and still insists on exactly one)."""

    def found() -> list[RefreshRequested]:
        return [
            e.data
            for e in firm_events(nats_url, firm_id, RefreshRequested.event_type)
            if isinstance(e.data, RefreshRequested) and e.data.refresh_id == refresh_id
        ]

    [requested] = eventually(found, f"RefreshRequested {refresh_id} in the audit log", timeout=30)
    return requested


def firm_snapshots(nats_url: str, firm_id: uuid.UUID) -> list[CompanySnapshot]:
    """The firm's company snapshots the snapshot stream (HUB_SNAPSHOTS) still holds, oldest first."""

    async def read(nats: Client) -> list[CompanySnapshot]:
        js = nats.jetstream()
        subject = f"hub.{firm_id}.company.*.snapshot"
        held = (await js.stream_info(SNAPSHOTS_STREAM, subjects_filter=subject)).state.subjects or {}
        snapshots: list[CompanySnapshot] = []
        if not sum(held.values()):
            return snapshots
        subscription = await js.subscribe(subject, stream=SNAPSHOTS_STREAM, ordered_consumer=True)
        try:
            while True:
                message = await subscription.next_msg(timeout=10)
                data = decode_event(message.data).data
                assert isinstance(data, CompanySnapshot), data
                snapshots.append(data)
                if message.metadata.num_pending == 0:
                    return snapshots
        finally:
            await subscription.unsubscribe()

    return _on_the_broker(nats_url, read)


def refreshes_settled(nats_url: str, firm_id: uuid.UUID, companies: Companies) -> bool:
    """Whether every refresh of the firm so far (requested, or started by a ClientAdded) has
    an outcome for each of its companies, as the streams hold them."""

    async def read(nats: Client) -> bool:
        return (await read_ledger(nats.jetstream(), firm_id)).settled(companies)

    return _on_the_broker(nats_url, read)
