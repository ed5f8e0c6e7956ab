"""Rebuilding the read model from the streams into a fresh database (invariant 3).

Both streams are read from their first message with ephemeral pull consumers that need no
acknowledgement, so a rebuild never touches the gateway's durables and JetStream keeps no
per-message state for it. Each stream is read up to the last sequence it held when the
rebuild started: a fixed end, so the rebuild finishes even while the hub keeps publishing.

Messages of the two streams are merged by the time JetStream stored them, which replays
the history in about the order the live gateway saw it, and applied in large batches
(thousands of events) through the same code as the live projection: the batch's rows are
loaded, the events folded through the pure rules in memory (``rules.py``), and what changed
written in one statement per table, with one position per stream per batch
(``projection.apply_events``). There is one projection code path; a rebuild only takes
bigger bites. ``table_checksums`` then compares a rebuilt model with a live one, table by
table.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import heapq
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, ReplayPolicy
from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import SQLModel

from hub_common.db import create_engine, migrate, session_factory, transaction
from hub_common.events import InvalidEvent, decode_event, prepare_decoding
from hub_common.logging import get_logger
from hub_common.streams import EVENTS_STREAM, SNAPSHOTS_STREAM
from hub_gateway.app import MIGRATIONS, VERSION_TABLE
from hub_gateway.readmodel.models import (
    AccountantRow,
    ClientRow,
    CompanyRateRow,
    CompanyRow,
    ConnectionTestRow,
    FailureRow,
    FirmRow,
    ProjectionPosition,
    RefreshRow,
    TenantAccessRow,
)
from hub_gateway.readmodel.projection import ReadModelInMemory, apply_events
from hub_gateway.readmodel.state import StoredEvent

logger = get_logger(__name__)

REBUILT_STREAMS = (EVENTS_STREAM, SNAPSHOTS_STREAM)

# Every projected table. Sessions, API tokens, preferences and saved views are the
# gateway's own records, not projections of events, so a rebuild neither creates nor
# compares them.
PROJECTED_MODELS: tuple[type[SQLModel], ...] = (
    FirmRow,
    AccountantRow,
    ClientRow,
    CompanyRow,
    CompanyRateRow,
    ConnectionTestRow,
    FailureRow,
    RefreshRow,
    TenantAccessRow,
    ProjectionPosition,
)
# When the projection ran, not what it projected: a rebuild necessarily differs here.
NOT_COMPARED_COLUMNS = frozenset({"snapshot_applied_at"})

# Events folded and written per transaction: large, so loading and writing the rows a batch
# touches (a few statements whatever its size) costs little per event.
DEFAULT_BATCH_SIZE = 5000
# Messages per fetch from NATS, and fetches kept ahead per stream while the database
# applies the previous batch.
_FETCH_SIZE = 1000
_PREFETCH_BATCHES = 8
# How long an idle fetch waits before the reader concludes the stream has nothing more
# (a message below the end sequence may have been removed by the stream's limits).
_FETCH_TIMEOUT_SECONDS = 2.0
# Lets the server drop the ephemeral consumer if the rebuild dies without deleting it.
_CONSUMER_INACTIVE_SECONDS = 60.0


class RebuildTargetNotEmpty(RuntimeError):
    """The target already holds a projection: a rebuild must start from an empty model."""


@dataclass
class RebuildResult:
    messages: int = 0
    invalid: int = 0
    # Reading and applying; the schema migration before it is not counted.
    elapsed_seconds: float = 0.0
    # The last sequence of each stream the rebuild read up to.
    end_sequences: dict[str, int] = field(default_factory=dict)

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0


@dataclass(frozen=True)
class _StreamExtent:
    stream: str
    messages: int
    last_sequence: int


async def _extent(js: JetStreamContext, stream: str) -> _StreamExtent:
    state = (await js.stream_info(stream)).state
    return _StreamExtent(stream=stream, messages=state.messages, last_sequence=state.last_seq)


class _StreamReader:
    """One stream's messages in stream order, up to its end, fetched ahead in batches.

    A background task fetches the next batches from NATS while the caller writes the
    previous ones to the database.
    """

    def __init__(self, js: JetStreamContext, extent: _StreamExtent, fetch_size: int) -> None:
        self._js = js
        self._extent = extent
        self._fetch_size = fetch_size
        self._batches: asyncio.Queue[list[Msg] | None] = asyncio.Queue(maxsize=_PREFETCH_BATCHES)
        self._subscription: JetStreamContext.PullSubscription | None = None
        self._consumer: str | None = None
        self._pump: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    async def __aenter__(self) -> _StreamReader:
        if self._extent.messages == 0:
            await self._batches.put(None)
            return self
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.NONE,
            replay_policy=ReplayPolicy.INSTANT,
            inactive_threshold=_CONSUMER_INACTIVE_SECONDS,
            mem_storage=True,
            num_replicas=1,
        )
        self._subscription = await self._js.pull_subscribe("hub.>", stream=self._extent.stream, config=config)
        self._consumer = (await self._subscription.consumer_info()).name
        self._pump = asyncio.create_task(self._fetch_all())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        if self._subscription is not None:
            await self._subscription.unsubscribe()
        if self._consumer is not None:
            # An ephemeral pull consumer outlives its subscription until inactive_threshold.
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self._js.delete_consumer(self._extent.stream, self._consumer)

    async def _fetch_all(self) -> None:
        assert self._subscription is not None
        last = self._extent.last_sequence
        try:
            while True:
                try:
                    fetched = await self._subscription.fetch(self._fetch_size, timeout=_FETCH_TIMEOUT_SECONDS)
                except nats.errors.TimeoutError:
                    break  # nothing left: the end message was removed by the stream's limits
                wanted = [msg for msg in fetched if msg.metadata.sequence.stream <= last]
                if wanted:
                    await self._batches.put(wanted)
                if len(wanted) < len(fetched) or fetched[-1].metadata.sequence.stream >= last:
                    break
        except Exception as error:
            self._error = error  # raised to the reader, so a failed fetch never ends a rebuild short
        await self._batches.put(None)

    async def messages(self) -> AsyncIterator[Msg]:
        while (batch := await self._batches.get()) is not None:
            for msg in batch:
                yield msg
        if self._error is not None:
            raise self._error


async def _merged_by_time(streams: list[AsyncIterator[Msg]]) -> AsyncIterator[Msg]:
    """Messages of several streams, each kept in its own order, interleaved by stored time."""
    heads: list[tuple[datetime, str, int, int, Msg]] = []

    async def push(index: int) -> None:
        msg = await anext(streams[index], None)
        if msg is not None:
            metadata = msg.metadata
            # Stream and sequence break ties deterministically; the index finds the source.
            heapq.heappush(heads, (metadata.timestamp, metadata.stream, metadata.sequence.stream, index, msg))

    for index in range(len(streams)):
        await push(index)
    while heads:
        *_, index, msg = heapq.heappop(heads)
        yield msg
        await push(index)


def _decoded(msg: Msg) -> StoredEvent[Any]:
    metadata = msg.metadata
    return StoredEvent(decode_event(msg.data), metadata.stream, metadata.sequence.stream)


@contextlib.contextmanager
def _collecting_less() -> Iterator[None]:
    """Garbage collection for a burst of short-lived objects.

    A rebuild allocates several objects per message, and with the default thresholds the
    collector's full passes over everything alive (schemas, tables, modules) took 30-170 ms
    each, a third of a rebuild of a thousand messages. What is alive at the start is frozen
    out of those passes, and the youngest generation is collected less often; reference
    counting still frees nearly everything at once.
    """
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(thresholds[0], 50_000), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


async def _ensure_empty(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        positions = (await session.execute(select(func.count()).select_from(ProjectionPosition))).scalar_one()
    if positions:
        raise RebuildTargetNotEmpty("the target database already holds a read model; rebuild into an empty one")


async def rebuild(
    js: JetStreamContext,
    database_url: str,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int, int], None] | None = None,
) -> RebuildResult:
    """Project both streams, from their start, into the empty database at ``database_url``.

    ``progress(applied, total)`` is called after each written batch; ``total`` counts the
    messages the streams held at the start.
    """
    await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE)
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    result = RebuildResult()
    try:
        await _ensure_empty(sessions)
        prepare_decoding()
        with _collecting_less():
            # Timed from here: the throughput is the replay's, not the schema migration's.
            started = time.perf_counter()
            extents = [await _extent(js, stream) for stream in REBUILT_STREAMS]
            result.end_sequences = {extent.stream: extent.last_sequence for extent in extents}
            total = sum(extent.messages for extent in extents)

            applied = 0

            def written(messages: int) -> None:
                nonlocal applied
                applied += messages
                if progress is not None:
                    progress(applied, total)

            async with contextlib.AsyncExitStack() as readers:
                streams = [
                    (
                        await readers.enter_async_context(_StreamReader(js, extent, min(batch_size, _FETCH_SIZE)))
                    ).messages()
                    for extent in extents
                ]
                await _apply_merged(sessions, _merged_by_time(streams), batch_size, result, written)
            result.elapsed_seconds = time.perf_counter() - started
    finally:
        await engine.dispose()
    logger.info(
        "read model rebuilt",
        messages=result.messages,
        invalid=result.invalid,
        elapsed_seconds=round(result.elapsed_seconds, 3),
        messages_per_second=round(result.messages_per_second),
    )
    return result


async def _apply_merged(
    sessions: async_sessionmaker[AsyncSession],
    merged: AsyncIterator[Msg],
    batch_size: int,
    result: RebuildResult,
    progress: Callable[[int], None],
) -> None:
    """Decode the merged messages into batches, and write each batch while the next is read.

    One batch is written at a time, in order: a batch's rows are loaded after the previous
    batch committed. Reading and decoding (this loop) go on meanwhile, while the database
    works.
    """
    target = ReadModelInMemory()  # the rebuild is the only writer of its empty target
    batch: list[StoredEvent[Any]] = []
    counted = 0  # messages read into ``batch``, invalid ones included
    writing: asyncio.Task[int] | None = None
    try:
        async for msg in merged:
            result.messages += 1
            counted += 1
            try:
                batch.append(_decoded(msg))
            except InvalidEvent:
                # The live consumers dead-letter these without advancing their position, so
                # skipping them keeps the rebuilt positions equal to the live ones.
                result.invalid += 1
                continue
            if len(batch) >= batch_size:
                if writing is not None:
                    progress(await writing)
                writing = asyncio.create_task(_apply(sessions, target, batch, counted))
                batch, counted = [], 0
        if writing is not None:
            progress(await writing)
            writing = None
        progress(await _apply(sessions, target, batch, counted))
    finally:
        if writing is not None:
            writing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writing


async def _apply(
    sessions: async_sessionmaker[AsyncSession], target: ReadModelInMemory, batch: list[StoredEvent[Any]], counted: int
) -> int:
    """Apply one batch in one transaction; how many messages it accounts for."""
    if batch:
        async with transaction(sessions) as session:
            await apply_events(session, batch, datetime.now(UTC), in_memory=target)
    return counted


def _canonical(value: Any) -> Any:
    """One spelling per value, whichever database and driver returned it."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)  # UtcDateTime stores UTC; SQLite drops the zone
        return value.astimezone(UTC).isoformat()
    if isinstance(value, Decimal):
        # Numeric(38, 2) comes back as 100.10 from PostgreSQL and may be 100.1 from SQLite.
        return format(value.normalize(), "f")
    if isinstance(value, uuid.UUID):
        return str(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def _table_of(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


def _canonical_rows(table: Table, rows: Iterator[Any]) -> list[str]:
    compared = [column.name for column in table.columns if column.name not in NOT_COMPARED_COLUMNS]
    primary_key = [column.name for column in table.primary_key.columns]
    keyed: list[tuple[list[Any], str]] = []
    for row in rows:
        values = {name: _canonical(row._mapping[name]) for name in compared}
        # Sorted here, on canonical values: UUIDs sort differently in PostgreSQL and SQLite.
        keyed.append(([str(values[name]) for name in primary_key], json.dumps(values, sort_keys=True)))
    return [line for _, line in sorted(keyed)]


async def table_checksums(database_url: str) -> dict[str, str]:
    """SHA-256 of each projected table's rows, canonically serialized and sorted by key."""
    engine = create_engine(database_url)
    checksums: dict[str, str] = {}
    try:
        async with engine.connect() as connection:
            for model in PROJECTED_MODELS:
                table = _table_of(model)
                rows = await connection.execute(select(table))
                digest = hashlib.sha256()
                for line in _canonical_rows(table, iter(rows)):
                    digest.update(line.encode())
                    digest.update(b"\n")
                checksums[table.name] = digest.hexdigest()
    finally:
        await engine.dispose()
    return checksums
